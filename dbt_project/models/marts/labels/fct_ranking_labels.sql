{%- set horizon = var('horizon_months') | int -%}

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
        -- a holding starts in (snapshot_on, last_day(snapshot_on + horizon months)]
        cast(coalesce(candidates.next_start_month_index <= candidates.month_index + {{ horizon }}, false) as integer)
            as label,
    from candidates
    inner join customers
        on candidates.customer_key = customers.customer_key
    inner join products
        on candidates.product_key = products.product_key
    inner join spine
        on candidates.month_index = spine.month_index
    where spine.is_labelled
        -- burn-in is per customer too: a customer's first burn_in_months months (counting the month
        -- they joined) are observation start-up, not adoptions
        and spine.month_index >= customers.joined_month_index + {{ var('burn_in_months') }} - 1
)

select * from final
