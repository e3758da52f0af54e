{#-
  The category propensity task's population: the customer x category rows the task scores, at every
  snapshot including the latest (the one scored in production, whose horizon is not observed yet).
  A row: a population customer x snapshot x product category the customer was not active in
  (int_customer_category_months_active) during the category_propensity_lookback_months months ending at
  the snapshot. fct_category_propensity_labels labels the rows of this model whose horizon is observed,
  so the candidate rule lives here only.
  The category columns are the customer's history in the category known at the snapshot (point in
  time: only months <= the snapshot's), the task's customer x category features.
  Computed on integer keys (customers, categories) and the month: ~90M rows at 1M customers x 24
  months x 8 categories, where string keys doubled the time.
-#}
{%- set lookback = var('category_propensity_lookback_months') | int -%}

with

population as (
    select * from {{ ref('int_customers_in_population') }}
),

customers as (
    select * from {{ ref('int_customers_keyed') }}
),

categories as (
    select * from {{ ref('int_categories_keyed') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

active_months as (
    select * from {{ ref('int_customer_category_months_active') }}
),

category_activity as (
    select * from {{ ref('int_customer_category_activity_windowed') }}
),

bounds as (
    select
        min(month_index) as first_month_index
    from spine
),

-- snapshots whose look-back is observed (from the first month of the data)
snapshots as (
    select
        population.customer_key,
        population.month_index
    from population
    cross join bounds
    where population.month_index >= bounds.first_month_index + {{ lookback }} - 1
),

-- the customer's first active month in each category they were ever active in
category_histories as (
    select
        customer_key,
        category_key,
        min(month_index) as first_active_month_index
    from active_months
    group by all
),

-- pairs without activity in the category on or before the snapshot: none in the look-back, no last active
-- month, and nothing owned or spent in the category (owning starts with a holding, an active month)
pairs_without_history as (
    select
        snapshots.customer_key,
        snapshots.month_index,
        categories.category_key,
        cast(null as bigint) as last_active_month_index,
        cast(0 as integer) as count_products_owned,
        cast(0.0 as double) as sum_spend_last_12_months
    from snapshots
    cross join categories
    left join category_histories
        on snapshots.customer_key = category_histories.customer_key
        and categories.category_key = category_histories.category_key
        and snapshots.month_index >= category_histories.first_active_month_index
    where category_histories.customer_key is null
),

-- pairs with activity on or before the snapshot: the only ones the point-in-time join looks up (at 1M
-- customers x 24 months, 40M of the 111M customer x snapshot x category pairs; the join over all of them
-- spilled 4-7 GB and took 34-54 s)
pairs_with_history as (
    select
        snapshots.customer_key,
        snapshots.month_index,
        category_histories.category_key
    from snapshots
    inner join category_histories
        on snapshots.customer_key = category_histories.customer_key
        and snapshots.month_index >= category_histories.first_active_month_index
),

-- the last active month on or before the snapshot
last_active as (
    {{ point_in_time_join(
        left='pairs_with_history', right='active_months', by=['customer_key', 'category_key'],
        left_time='month_index', right_time='month_index', direction='at_or_before',
        columns={'last_active_month_index': 'month_index'},
        left_keys=['customer_key', 'month_index', 'category_key'],
    ) }}
),

inactive_with_history as (
    select
        last_active.customer_key,
        last_active.month_index,
        last_active.category_key,
        last_active.last_active_month_index,
        category_activity.count_products_owned,
        category_activity.sum_spend_last_12_months
    from last_active
    left join category_activity
        on last_active.customer_key = category_activity.customer_key
        and last_active.category_key = category_activity.category_key
        and last_active.month_index = category_activity.month_index
    where last_active.last_active_month_index <= last_active.month_index - {{ lookback }}
),

not_active_in_lookback as (
    select * from pairs_without_history
    union all
    select * from inactive_with_history
),

-- the string ids joined back once, from the 1M-row customers and the spine, not the population
final as (
    select
        customers.customer_id,
        not_active_in_lookback.month_index,
        spine.snapshot_on,
        spine.event_timestamp,
        categories.category,
        cast(not_active_in_lookback.month_index - not_active_in_lookback.last_active_month_index as integer)
            as months_since_category_activity,
        cast(coalesce(not_active_in_lookback.count_products_owned, 0) as integer)
            as count_products_owned_in_category,
        cast(coalesce(not_active_in_lookback.sum_spend_last_12_months, 0.0) as double)
            as sum_spend_category_last_12_months
    from not_active_in_lookback
    inner join customers
        on not_active_in_lookback.customer_key = customers.customer_key
    inner join spine
        on not_active_in_lookback.month_index = spine.month_index
    inner join categories
        on not_active_in_lookback.category_key = categories.category_key
)

select * from final
