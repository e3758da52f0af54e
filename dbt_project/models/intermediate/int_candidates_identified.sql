{#-
  A view, not a table: the candidate grain is ~20 rows per customer-month, so the three candidate-grain
  marts stream it straight to parquet instead of writing it once more here.
-#}
{{ config(materialized='view') }}

with

candidates as (
    select * from {{ ref('int_candidates_retrieved') }}
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
        spine.is_labelled,
        candidates.customer_key,
        candidates.month_index,
        customers.segment,
        candidates.age_years,
        candidates.ownership_breadth,
        candidates.owned_set_id,
        candidates.is_latest_start_recent,
        candidates.product_key,
        candidates.next_start_month_index,
        candidates.last_end_month_index,
        customers.joined_month_index,
        products.category,
        products.category_key
    from candidates
    inner join customers
        on candidates.customer_key = customers.customer_key
    inner join products
        on candidates.product_key = products.product_key
    inner join spine
        on candidates.month_index = spine.month_index
)

select * from final
