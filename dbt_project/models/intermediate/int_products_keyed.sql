{#- Integer surrogate keys for products (see int_customers_keyed). -#}
with

products as (
    select * from {{ ref('stg_raw__products') }}
),

categories as (
    select * from {{ ref('int_categories_keyed') }}
),

final as (
    select
        cast(row_number() over (order by products.product_id) as integer) as product_key,
        products.product_id,
        products.category,
        categories.category_key,
        products.min_age,
        products.max_age
    from products
    inner join categories
        on products.category = categories.category
)

select * from final
