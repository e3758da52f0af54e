with

candidates as (
    select * from {{ ref('int_candidates_joined') }}
),

customers as (
    select * from {{ ref('int_customers_keyed') }}
),

products as (
    select * from {{ ref('int_products_keyed') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

ownership as (
    select * from {{ ref('int_product_ownership_counted') }}
),

category_spend as (
    select * from {{ ref('int_customer_category_spend_windowed') }}
),

final as (
    select
        customers.customer_id,
        products.product_id,
        spine.event_timestamp,
        cast(candidates.last_end_month_index is not null as integer) as is_previously_held,
        cast(candidates.month_index - candidates.last_end_month_index as integer) as months_since_last_held,
        cast(ownership.count_owners / nullif(ownership.count_population, 0) as double) as share_segment_owning,
        cast(coalesce(category_spend.sum_spend_last_12_months, 0.0) as double)
            as sum_spend_category_last_12_months,
    from candidates
    inner join customers
        on candidates.customer_key = customers.customer_key
    inner join products
        on candidates.product_key = products.product_key
    inner join spine
        on candidates.month_index = spine.month_index
    left join ownership
        on products.product_id = ownership.product_id
        and candidates.segment is not distinct from ownership.segment
        and candidates.month_index = ownership.month_index
    left join category_spend
        on candidates.customer_key = category_spend.customer_key
        and products.category = category_spend.category
        and candidates.month_index = category_spend.month_index
)

select * from final
