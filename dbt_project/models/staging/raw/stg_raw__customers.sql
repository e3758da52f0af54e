with

source as (
    select * from {{ source('raw', 'customers') }}
),

final as (
    select
        cast(customer_id as varchar) as customer_id,
        cast(joined_on as date) as joined_on,
        cast(birth_year as integer) as birth_year,
        cast(income as double) as income,
        cast(segment as varchar) as segment,
        cast(region as varchar) as region,
    from source
)

select * from final
