with

candidates as (
    select * from {{ ref('int_candidates_identified') }}
),

ownership as (
    select * from {{ ref('int_product_ownership_counted') }}
),

category_spend as (
    select * from {{ ref('int_customer_category_spend_windowed') }}
),

final as (
    select
        candidates.customer_id,
        candidates.product_id,
        candidates.event_timestamp,
        cast(candidates.last_end_month_index is not null as integer) as is_previously_held,
        cast(candidates.month_index - candidates.last_end_month_index as integer) as months_since_last_held,
        cast(ownership.count_owners / nullif(ownership.count_population, 0) as double) as share_segment_owning,
        cast(coalesce(category_spend.sum_spend_last_12_months, 0.0) as double)
            as sum_spend_category_last_12_months,
    from candidates
    left join ownership
        on candidates.product_id = ownership.product_id
        and candidates.segment is not distinct from ownership.segment
        and candidates.month_index = ownership.month_index
    left join category_spend
        on candidates.customer_key = category_spend.customer_key
        and candidates.category = category_spend.category
        and candidates.month_index = category_spend.month_index
)

select * from final
