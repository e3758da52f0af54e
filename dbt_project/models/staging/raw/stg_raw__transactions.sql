with

source as (
    select * from {{ source('raw', 'transactions') }}
),

final as (
    select
        cast(customer_id as string) as customer_id,
        cast(product_id as string) as product_id,
        cast(occurred_at as timestamp) as occurred_at,
        cast(occurred_at as date) as occurred_on,
        cast(amount as double) as amount
    from source
)

select * from final
