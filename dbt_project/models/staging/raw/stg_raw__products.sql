with

source as (
    select * from {{ source('raw', 'products') }}
),

final as (
    select
        cast(product_id as string) as product_id,
        cast(product_name as string) as product_name,
        cast(category as string) as category,
        cast(min_age as integer) as min_age,
        cast(max_age as integer) as max_age
    from source
)

select * from final
