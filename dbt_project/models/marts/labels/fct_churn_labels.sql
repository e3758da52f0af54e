{#-
  The churn task's labels: one row of fct_churn_population (a customer at risk at a snapshot, by the
  churn_rule it resolved) whose churn horizon is observed, labelled:
    inactivity: churned = no transaction and no new holding in the churn_horizon_months months after it;
    closure:    churned = owns nothing at the end of the horizon;
    either:     churned by the rule(s) the customer is at risk by.
-#}
{%- set horizon = var('churn_horizon_months') | int -%}

with

at_risk_population as (
    select * from {{ ref('fct_churn_population') }}
),

events as (
    select * from {{ ref('int_customer_events_monthly') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

bounds as (
    select
        -- the spine holds complete months only: the last one ends on or before observed_until
        max(month_index) as last_month_index
    from spine
),

at_risk as (
    select at_risk_population.*
    from at_risk_population
    cross join bounds
    where at_risk_population.month_index + {{ horizon }} <= bounds.last_month_index
),

-- what happens in the horizon (month_index + 1 .. month_index + horizon)
horizon_events as (
    select
        at_risk.customer_id,
        at_risk.month_index,
        coalesce(sum(events.count_transactions), 0) as count_transactions,
        coalesce(sum(events.count_holdings_started), 0) as count_holdings_started,
        coalesce(sum(events.count_holdings_ended), 0) as count_holdings_ended
    from at_risk
    left join events
        on at_risk.customer_id = events.customer_id
        and events.month_index between at_risk.month_index + 1 and at_risk.month_index + {{ horizon }}
    group by at_risk.customer_id, at_risk.month_index
),

judged as (
    select
        at_risk.*,
        horizon_events.count_transactions = 0 and horizon_events.count_holdings_started = 0
            as is_inactive_in_horizon,
        at_risk.count_products_owned + horizon_events.count_holdings_started
            - horizon_events.count_holdings_ended <= 0 as owns_nothing_after_horizon
    from at_risk
    inner join horizon_events
        on at_risk.customer_id = horizon_events.customer_id
        and at_risk.month_index = horizon_events.month_index
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
        ) as label
    from judged
)

select * from final
