{#-
  The population rule: at snapshot s a customer who joined on or before s is in the population unless
  dormant. Dormant = held a product before, owns nothing at s and made no transaction in the
  activity_lookback_months months ending at s. A customer who never held a product is a prospect: in the
  population from joining (for prospect_window_months after the join month when that var is set).
-#}
{%- set lookback = var('activity_lookback_months') | int -%}
{%- set prospect_window = var('prospect_window_months') -%}

with

customers as (
    select * from {{ ref('stg_raw__customers') }}
),

customer_keys as (
    select * from {{ ref('int_customers_keyed') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

events as (
    select * from {{ ref('int_customer_events_monthly') }}
),

-- every customer x snapshot on or after the day they joined
customer_snapshots as (
    select
        customer_keys.customer_key,
        spine.month_index
    from customers
    inner join customer_keys
        on customers.customer_id = customer_keys.customer_id
    inner join spine
        on customers.joined_on <= spine.snapshot_on
),

keyed_events as (
    select
        customer_keys.customer_key,
        events.*
    from events
    inner join customer_keys
        on events.customer_id = customer_keys.customer_id
),

-- snapshot rows and event-history rows side by side, so that windows see all history; on the integer
-- customer key (at 1M customers x 24 months the window sorted ~22M rows on the string id instead)
timeline as (
    select
        coalesce(customer_snapshots.customer_key, events.customer_key) as customer_key,
        coalesce(customer_snapshots.month_index, events.month_index) as month_index,
        customer_snapshots.customer_key is not null as is_snapshot,
        coalesce(events.count_holdings_started, 0) as count_holdings_started,
        coalesce(events.count_holdings_ended, 0) as count_holdings_ended,
        coalesce(events.count_transactions, 0) as count_transactions,
        coalesce(events.sum_amount, 0.0) as sum_amount
    from customer_snapshots
    full outer join keyed_events as events
        on customer_snapshots.customer_key = events.customer_key
        and customer_snapshots.month_index = events.month_index
),

windowed as (
    select
        customer_key,
        month_index,
        is_snapshot,
        sum(count_holdings_started) over history - sum(count_holdings_ended) over history
            as count_products_owned,
        sum(count_holdings_started) over history as count_holdings_started_ever,
        max(case when count_holdings_started > 0 then month_index end) over history
            as last_holding_start_month_index,
        sum(count_holdings_started) over last_3 as count_products_added_last_3_months,
        sum(count_holdings_started) over last_6 as count_products_added_last_6_months,
        sum(count_holdings_started) over last_12 as count_products_added_last_12_months,
        sum(count_holdings_ended) over last_3 as count_products_dropped_last_3_months,
        sum(count_holdings_ended) over last_6 as count_products_dropped_last_6_months,
        sum(count_holdings_ended) over last_12 as count_products_dropped_last_12_months,
        -- the last 1 month is the row's own month (one timeline row per customer x month): no window
        sum_amount as sum_spend_last_1_months,
        sum(sum_amount) over last_3 as sum_spend_last_3_months,
        sum(sum_amount) over last_12 as sum_spend_last_12_months,
        count_transactions as count_transactions_last_1_months,
        sum(count_transactions) over last_3 as count_transactions_last_3_months,
        sum(count_transactions) over last_12 as count_transactions_last_12_months,
        sum(count_transactions) over last_lookback as count_transactions_lookback,
        max(case when count_transactions > 0 then month_index end) over history
            as last_transaction_month_index
    from timeline
    window
        history as (partition by customer_key order by month_index rows between unbounded preceding and current row),
        last_3 as (partition by customer_key order by month_index range between 2 preceding and current row),
        last_6 as (partition by customer_key order by month_index range between 5 preceding and current row),
        last_12 as (partition by customer_key order by month_index range between 11 preceding and current row),
        last_lookback as (
            partition by customer_key order by month_index
            range between {{ lookback - 1 }} preceding and current row
        )
),

final as (
    select
        customer_keys.customer_id,
        windowed.customer_key,
        spine.month_index,
        spine.snapshot_on,
        spine.event_timestamp,
        spine.is_labelled,
        spine.is_latest,
        {{ month_index('customers.joined_on') }} as joined_month_index,
        spine.month_index - {{ month_index('customers.joined_on') }} as tenure_months,
        cast(year(spine.snapshot_on) - customers.birth_year as bigint) as age_years,
        customers.income,
        customers.segment,
        customers.region,
        cast(windowed.count_products_owned as integer) as count_products_owned,
        cast(windowed.count_products_added_last_3_months as integer) as count_products_added_last_3_months,
        cast(windowed.count_products_added_last_6_months as integer) as count_products_added_last_6_months,
        cast(windowed.count_products_added_last_12_months as integer) as count_products_added_last_12_months,
        cast(windowed.count_products_dropped_last_3_months as integer) as count_products_dropped_last_3_months,
        cast(windowed.count_products_dropped_last_6_months as integer) as count_products_dropped_last_6_months,
        cast(windowed.count_products_dropped_last_12_months as integer)
            as count_products_dropped_last_12_months,
        cast(windowed.sum_spend_last_1_months as double) as sum_spend_last_1_months,
        cast(windowed.sum_spend_last_3_months as double) as sum_spend_last_3_months,
        cast(windowed.sum_spend_last_12_months as double) as sum_spend_last_12_months,
        cast(windowed.count_transactions_last_1_months as integer) as count_transactions_last_1_months,
        cast(windowed.count_transactions_last_3_months as integer) as count_transactions_last_3_months,
        cast(windowed.count_transactions_last_12_months as integer) as count_transactions_last_12_months,
        cast(spine.month_index - windowed.last_transaction_month_index as integer)
            as months_since_last_transaction,
        cast(windowed.count_holdings_started_ever as integer) as count_holdings_started_ever,
        cast(spine.month_index - windowed.last_holding_start_month_index as integer)
            as months_since_last_holding_start,
        -- the calendar month (1..12) in which the label window starts: seasonality
        cast(month({{ dbt.dateadd('day', 1, 'spine.snapshot_on') }}) as integer) as label_month_of_year
    from windowed
    inner join spine
        on windowed.month_index = spine.month_index
    inner join customer_keys
        on windowed.customer_key = customer_keys.customer_key
    inner join customers
        on customer_keys.customer_id = customers.customer_id
    where windowed.is_snapshot
        and (
            windowed.count_products_owned >= 1
            or windowed.count_transactions_lookback >= 1
            or (
                windowed.count_holdings_started_ever = 0
                {%- if prospect_window is not none %}
                and spine.month_index - {{ month_index('customers.joined_on') }} < {{ prospect_window | int }}
                {%- endif %}
            )
        )
)

-- stored in snapshot order: int_candidates_eligible, built from it, then keeps its rows grouped by month,
-- so that a read of one snapshot skips the others' row groups (the packer reads one month at a time: at 1M
-- customers x 24 months, 3.6 s of scanning all 250M candidates per month otherwise)
select * from final
order by month_index
