with

products as (
    select * from {{ ref('stg_raw__products') }}
),

final as (
    select
        product_id,
        product_name,
        category,
        min_age,
        max_age
    from products
)

select * from final
