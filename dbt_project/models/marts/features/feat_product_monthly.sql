with

products as (
    select * from {{ ref('stg_raw__products') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

ownership as (
    select * from {{ ref('int_product_ownership_counted') }}
),

adoptions as (
    select * from {{ ref('int_product_adoptions_aggregated') }}
),

seasonal_indices as (
    select * from {{ ref('int_product_seasonal_indices') }}
),

owners as (
    select
        product_id,
        month_index,
        sum(count_owners) as count_owners,
        sum(count_population) as count_population
    from ownership
    group by all
),

-- the candidates of the snapshot n months earlier, and how many of them adopted by this snapshot
adoption_rates as (
    select
        products.product_id,
        spine.month_index,
        adoptions_1.count_adopted_within_1_months / nullif(adoptions_1.count_candidates, 0)
            as adoption_rate_last_1_months,
        adoptions_3.count_adopted_within_3_months / nullif(adoptions_3.count_candidates, 0)
            as adoption_rate_last_3_months,
        adoptions_12.count_adopted_within_12_months / nullif(adoptions_12.count_candidates, 0)
            as adoption_rate_last_12_months,
        spine_1.month_index is not null as has_snapshot_1,
        spine_3.month_index is not null as has_snapshot_3,
        spine_12.month_index is not null as has_snapshot_12,
        -- the label window of the snapshot 12 months earlier is the same calendar month as this one's
        adoptions_12.count_adopted_within_1_months / nullif(adoptions_12.count_candidates, 0)
            as adoption_rate_same_month_last_year
    from products
    cross join spine
    left join spine as spine_1
        on spine_1.month_index = spine.month_index - 1
    left join spine as spine_3
        on spine_3.month_index = spine.month_index - 3
    left join spine as spine_12
        on spine_12.month_index = spine.month_index - 12
    left join adoptions as adoptions_1
        on adoptions_1.product_id = products.product_id
        and adoptions_1.month_index = spine.month_index - 1
    left join adoptions as adoptions_3
        on adoptions_3.product_id = products.product_id
        and adoptions_3.month_index = spine.month_index - 3
    left join adoptions as adoptions_12
        on adoptions_12.product_id = products.product_id
        and adoptions_12.month_index = spine.month_index - 12
),

final as (
    select
        products.product_id,
        spine.event_timestamp,
        cast(coalesce(owners.count_owners, 0) as integer) as count_owners,
        cast(coalesce(owners.count_owners, 0) / nullif(owners.count_population, 0) as double)
            as share_population_owning,
        cast(adoption_rates.adoption_rate_last_1_months as double) as adoption_rate_last_1_months,
        cast(adoption_rates.adoption_rate_last_3_months as double) as adoption_rate_last_3_months,
        cast(adoption_rates.adoption_rate_last_12_months as double) as adoption_rate_last_12_months,
        cast(
            adoption_rates.adoption_rate_last_3_months / nullif(adoption_rates.adoption_rate_last_12_months, 0)
            as double
        ) as popularity_trend_3_vs_12_months,
        cast(adoption_rates.adoption_rate_same_month_last_year as double) as adoption_rate_same_month_last_year,
        cast(
            adoption_rates.adoption_rate_same_month_last_year
            / nullif(adoption_rates.adoption_rate_last_12_months / 12, 0) as double
        ) as seasonality_ratio_same_month_last_year,
        seasonal_indices.seasonal_index_label_month,
        products.min_age,
        products.max_age
    from products
    cross join spine
    left join owners
        on products.product_id = owners.product_id
        and spine.month_index = owners.month_index
    left join adoption_rates
        on products.product_id = adoption_rates.product_id
        and spine.month_index = adoption_rates.month_index
    left join seasonal_indices
        on products.product_id = seasonal_indices.product_id
        and spine.month_index = seasonal_indices.month_index
)

select * from final
