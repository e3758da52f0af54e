with

candidates as (
    select * from {{ ref('int_candidates_identified') }}
),

final as (
    select
        customer_id,
        product_id,
        snapshot_on,
        event_timestamp,
        -- a holding starts in (snapshot_on, last_day(snapshot_on + horizon months)]
        cast({{ is_adopted_within_horizon('next_start_month_index', 'month_index') }} as integer) as label
    from candidates
    where is_labelled
        -- burn-in is per customer too: a customer's first burn_in_months months (counting the month
        -- they joined) are observation start-up, not adoptions
        and {{ is_past_burn_in('month_index', 'joined_month_index') }}
)

select * from final
