with

source as (
    select * from {{ source('raw', 'customers') }}
),

final as (
    select
        cast(customer_id as string) as customer_id,
        cast(joined_on as date) as joined_on,
        cast(birth_year as integer) as birth_year,
        cast(income as double) as income,
        cast(segment as string) as segment,
        cast(region as string) as region
    from source
)

select * from final
