{#-
  The churn task's population: who is at risk of churning at a snapshot, for every snapshot including the
  latest (the one scored in production, whose horizon is not observed yet). fct_churn_labels labels the
  rows of this model whose horizon is observed, so the at-risk rule lives here only.
  churn_rule (var): who is at risk (and, in fct_churn_labels, what churning means):
    inactivity: a transaction in the activity_lookback_months months ending at the snapshot;
    closure:    owns a product at the snapshot;
    either:     at risk by either rule;
    auto:       inactivity when the dataset has transactions, else closure.
-#}
{%- set rule = var('churn_rule') -%}
{%- if rule not in ('auto', 'inactivity', 'closure', 'either') -%}
    {{ exceptions.raise_compiler_error("churn_rule must be auto, inactivity, closure or either, not " ~ rule) }}
{%- endif -%}

with

population as (
    select * from {{ ref('int_customers_in_population') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

transactions as (
    select * from {{ ref('stg_raw__transactions') }}
),

bounds as (
    select
        min(month_index) as first_month_index
    from spine
),

chosen_rule as (
    select
        {% if rule == 'auto' -%}
        case when exists (select 1 from transactions) then 'inactivity' else 'closure' end
        {%- else -%}
        '{{ rule }}'
        {%- endif %} as churn_rule
),

judged as (
    select
        population.customer_id,
        population.month_index,
        population.snapshot_on,
        population.event_timestamp,
        chosen_rule.churn_rule,
        population.count_products_owned,
        coalesce(population.months_since_last_transaction < {{ var('activity_lookback_months') | int }}, false)
            as is_active_by_transactions,
        population.count_products_owned >= 1 as is_active_by_holdings
    from population
    cross join bounds
    cross join chosen_rule
    -- the whole activity look-back is observed (the ranking's burn-in is about first holdings mistaken
    -- for adoptions, not about churn)
    where population.month_index >= bounds.first_month_index + {{ var('activity_lookback_months') | int }} - 1
),

final as (
    select * from judged
    where case churn_rule
        when 'inactivity' then is_active_by_transactions
        when 'closure' then is_active_by_holdings
        else is_active_by_transactions or is_active_by_holdings
    end
)

select * from final
