{#- Integer surrogate keys: the candidate-grain intermediates join and store 4-byte keys, not strings. -#}
with

customers as (
    select * from {{ ref('stg_raw__customers') }}
),

final as (
    select
        cast(row_number() over (order by customer_id) as integer) as customer_key,
        customer_id,
        {{ month_index('joined_on') }} as joined_month_index,
        segment
    from customers
)

select * from final
