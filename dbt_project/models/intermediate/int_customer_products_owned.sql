{#-
  What each population customer owns at each snapshot, one row per owned product, ranked by recency:
  recency_rank 1 is the product whose current holding started last (ties by product key).
-#}
with

population as (
    select * from {{ ref('int_customers_in_population') }}
),

segments as (
    select * from {{ ref('int_holdings_segmented') }}
),

products as (
    select * from {{ ref('int_products_keyed') }}
),

owned as (
    select
        population.customer_key,
        population.month_index,
        segments.product_key,
        segments.segment_start_month_index as started_month_index
    from population
    inner join segments
        on population.customer_key = segments.customer_key
        and population.month_index >= segments.segment_start_month_index
        and population.month_index < segments.segment_end_month_index
    where segments.is_owned
),

final as (
    select
        owned.customer_key,
        owned.month_index,
        owned.product_key,
        products.category,
        cast(owned.started_month_index as integer) as started_month_index,
        cast(row_number() over (
            partition by owned.customer_key, owned.month_index
            order by owned.started_month_index desc, owned.product_key
        ) as integer) as recency_rank
    from owned
    inner join products
        on owned.product_key = products.product_key
)

select * from final
