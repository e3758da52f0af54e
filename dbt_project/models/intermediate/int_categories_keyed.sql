{#- Integer surrogate keys for product categories (see int_customers_keyed). -#}
with

products as (
    select * from {{ ref('stg_raw__products') }}
),

categories as (
    select distinct category from products
),

final as (
    select
        cast(row_number() over (order by category) as integer) as category_key,
        category
    from categories
)

select * from final
