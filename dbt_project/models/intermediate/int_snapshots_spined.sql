{%- set observed_until = var('observed_until') -%}
{%- set observed_from = var('observed_from') -%}

with

customers as (
    select * from {{ ref('stg_raw__customers') }}
),

holdings as (
    select * from {{ ref('stg_raw__holdings') }}
),

transactions as (
    select * from {{ ref('stg_raw__transactions') }}
),

customer_bounds as (
    select
        min(joined_on) as first_joined_on,
        max(joined_on) as last_joined_on
    from customers
),

holding_bounds as (
    select
        min(started_on) as first_started_on,
        max(greatest(started_on, ended_on)) as last_holding_on
    from holdings
),

transaction_bounds as (
    select
        min(occurred_on) as first_occurred_on,
        max(occurred_on) as last_occurred_on
    from transactions
),

bounds as (
    select
        {% if observed_from -%}
        cast('{{ observed_from }}' as date)
        {%- else -%}
        coalesce(first_occurred_on, least(first_joined_on, first_started_on))
        {%- endif %} as observed_from,
        {% if observed_until -%}
        cast('{{ observed_until }}' as date)
        {%- else -%}
        greatest(last_joined_on, last_holding_on, last_occurred_on)
        {%- endif %} as observed_until
    from customer_bounds, holding_bounds, transaction_bounds
),

months as (
    select
        {{ month_starts('observed_from', 'observed_until') }} as month_start,
        observed_from,
        observed_until
    from bounds
),

snapshots as (
    select
        last_day(month_start) as snapshot_on,
        {{ month_index('month_start') }} as month_index,
        {{ month_index('observed_from') }} as first_month_index,
        observed_until
    from months
    where last_day(month_start) <= observed_until
),

final as (
    select
        month_index,
        snapshot_on,
        cast({{ dbt.dateadd('day', 1, 'snapshot_on') }} as timestamp) as event_timestamp,
        (
            last_day({{ dbt.dateadd('month', var('horizon_months') | int, 'snapshot_on') }}) <= observed_until
            and month_index >= first_month_index + {{ var('burn_in_months') }} - 1
        ) as is_labelled,
        month_index = max(month_index) over () as is_latest
    from snapshots
)

select * from final
