{#- Integer surrogate keys for products (see int_customers_keyed). -#}
with

products as (
    select * from {{ ref('stg_raw__products') }}
),

final as (
    select
        cast(row_number() over (order by product_id) as integer) as product_key,
        product_id,
        category,
        min_age,
        max_age
    from products
)

select * from final
