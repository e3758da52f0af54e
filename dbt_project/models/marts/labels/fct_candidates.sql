with

candidates as (
    select * from {{ ref('int_candidates_identified') }}
),

final as (
    select
        customer_id,
        product_id,
        snapshot_on,
        event_timestamp
    from candidates
)

select * from final
