{#-
  The churn task's labels: one row per customer at risk at a snapshot whose churn horizon is observed.
  churn_rule (var): how a customer churns within the churn_horizon_months months after the snapshot:
    inactivity: at risk = a transaction in the activity_lookback_months months ending at the snapshot;
                churned = no transaction and no new holding in the horizon;
    closure:    at risk = owns a product at the snapshot; churned = owns none at the end of the horizon;
    either:     at risk by either rule; churned by either rule (closure only for those owning a product);
    auto:       inactivity when the dataset has transactions, else closure.
-#}
{%- set horizon = var('churn_horizon_months') | int -%}
{%- set rule = var('churn_rule') -%}
{%- if rule not in ('auto', 'inactivity', 'closure', 'either') -%}
    {{ exceptions.raise_compiler_error("churn_rule must be auto, inactivity, closure or either, not " ~ rule) }}
{%- endif -%}

with

population as (
    select * from {{ ref('int_customers_in_population') }}
),

events as (
    select * from {{ ref('int_customer_events_monthly') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

transactions as (
    select * from {{ ref('stg_raw__transactions') }}
),

bounds as (
    select
        min(month_index) as first_month_index,
        -- the spine holds complete months only: the last one ends on or before observed_until
        max(month_index) as last_month_index,
    from spine
),

chosen_rule as (
    select
        {% if rule == 'auto' -%}
        case when exists (select 1 from transactions) then 'inactivity' else 'closure' end
        {%- else -%}
        '{{ rule }}'
        {%- endif %} as churn_rule,
),

at_risk as (
    select
        population.customer_id,
        population.month_index,
        population.snapshot_on,
        population.event_timestamp,
        population.count_products_owned,
        coalesce(population.months_since_last_transaction < {{ var('activity_lookback_months') | int }}, false)
            as is_active_by_transactions,
        population.count_products_owned >= 1 as is_active_by_holdings,
    from population
    cross join bounds
    where population.month_index + {{ horizon }} <= bounds.last_month_index
        -- the whole activity look-back is observed (the ranking's burn-in is about first holdings
        -- mistaken for adoptions, not about churn)
        and population.month_index >= bounds.first_month_index + {{ var('activity_lookback_months') | int }} - 1
),

-- what happens in the horizon (month_index + 1 .. month_index + horizon)
horizon_events as (
    select
        at_risk.customer_id,
        at_risk.month_index,
        coalesce(sum(events.count_transactions), 0) as count_transactions,
        coalesce(sum(events.count_holdings_started), 0) as count_holdings_started,
        coalesce(sum(events.count_holdings_ended), 0) as count_holdings_ended,
    from at_risk
    left join events
        on at_risk.customer_id = events.customer_id
        and events.month_index between at_risk.month_index + 1 and at_risk.month_index + {{ horizon }}
    group by at_risk.customer_id, at_risk.month_index
),

judged as (
    select
        at_risk.*,
        chosen_rule.churn_rule,
        horizon_events.count_transactions = 0 and horizon_events.count_holdings_started = 0
            as is_inactive_in_horizon,
        at_risk.count_products_owned + horizon_events.count_holdings_started
            - horizon_events.count_holdings_ended <= 0 as owns_nothing_after_horizon,
    from at_risk
    inner join horizon_events
        on at_risk.customer_id = horizon_events.customer_id
        and at_risk.month_index = horizon_events.month_index
    cross join chosen_rule
),

final as (
    select
        customer_id,
        snapshot_on,
        event_timestamp,
        churn_rule,
        cast(
            case churn_rule
                when 'inactivity' then is_inactive_in_horizon
                when 'closure' then owns_nothing_after_horizon
                else (is_active_by_transactions and is_inactive_in_horizon)
                    or (is_active_by_holdings and owns_nothing_after_horizon)
            end as integer
        ) as label,
    from judged
    where case churn_rule
        when 'inactivity' then is_active_by_transactions
        when 'closure' then is_active_by_holdings
        else is_active_by_transactions or is_active_by_holdings
    end
)

select * from final
