with

source as (
    select * from {{ source('raw', 'holdings') }}
),

final as (
    select
        cast(customer_id as string) as customer_id,
        cast(product_id as string) as product_id,
        cast(started_on as date) as started_on,
        cast(ended_on as date) as ended_on
    from source
)

select * from final
