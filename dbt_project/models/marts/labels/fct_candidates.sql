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

final as (
    select
        customers.customer_id,
        products.product_id,
        spine.snapshot_on,
        spine.event_timestamp,
    from candidates
    inner join customers
        on candidates.customer_key = customers.customer_key
    inner join products
        on candidates.product_key = products.product_key
    inner join spine
        on candidates.month_index = spine.month_index
)

select * from final
