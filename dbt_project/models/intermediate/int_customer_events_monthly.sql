{{ config(materialized='view') }}

with

holdings as (
    select * from {{ ref('stg_raw__holdings') }}
),

transactions as (
    select * from {{ ref('stg_raw__transactions') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

last_month as (
    select max(month_index) as last_month_index from spine
),

holding_starts as (
    select
        customer_id,
        {{ month_index('started_on') }} as month_index,
        1 as count_holdings_started,
        0 as count_holdings_ended,
        0 as count_transactions,
        0.0 as sum_amount
    from holdings
),

holding_ends as (
    select
        customer_id,
        {{ month_index('ended_on') }} as month_index,
        0 as count_holdings_started,
        1 as count_holdings_ended,
        0 as count_transactions,
        0.0 as sum_amount
    from holdings
    where ended_on is not null
),

transaction_months as (
    select
        customer_id,
        {{ month_index('occurred_on') }} as month_index,
        0 as count_holdings_started,
        0 as count_holdings_ended,
        1 as count_transactions,
        amount as sum_amount
    from transactions
),

events as (
    select * from holding_starts
    union all
    select * from holding_ends
    union all
    select * from transaction_months
),

final as (
    select
        events.customer_id,
        events.month_index,
        cast(sum(events.count_holdings_started) as integer) as count_holdings_started,
        cast(sum(events.count_holdings_ended) as integer) as count_holdings_ended,
        cast(sum(events.count_transactions) as integer) as count_transactions,
        {{ exact_sum('events.sum_amount', 6) }} as sum_amount
    from events
    cross join last_month
    where events.month_index <= last_month.last_month_index
    group by events.customer_id, events.month_index
)

select * from final
