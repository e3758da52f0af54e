{#-
  The category propensity task's labels: one row per population customer x snapshot x product category
  the customer was not active in during the category_propensity_lookback_months months ending at the
  snapshot; label = 1 iff they are active in it within the category_propensity_horizon_months months
  after. Active in a category in a month = a transaction on one of its products or a holding of one
  of its products started (a purchase in The Complete Journey, an adoption in a bank).
  The category columns are the customer's history in the category known at the snapshot (point in
  time: only months <= the snapshot's), the task's customer x category features.
-#}
{%- set lookback = var('category_propensity_lookback_months') | int -%}
{%- set horizon = var('category_propensity_horizon_months') | int -%}

with

population as (
    select * from {{ ref('int_customers_in_population') }}
),

customers as (
    select * from {{ ref('int_customers_keyed') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

products as (
    select * from {{ ref('stg_raw__products') }}
),

transactions as (
    select * from {{ ref('stg_raw__transactions') }}
),

holdings as (
    select * from {{ ref('stg_raw__holdings') }}
),

category_activity as (
    select * from {{ ref('int_customer_category_activity_windowed') }}
),

bounds as (
    select
        min(month_index) as first_month_index,
        max(month_index) as last_month_index,
    from spine
),

categories as (
    select distinct category from products
),

-- one row per customer x category x month in which the customer was active in the category
active_months as (
    select distinct
        transactions.customer_id,
        products.category,
        {{ month_index('transactions.occurred_on') }} as month_index,
    from transactions
    inner join products
        on transactions.product_id = products.product_id
    union
    select distinct
        holdings.customer_id,
        products.category,
        {{ month_index('holdings.started_on') }} as month_index,
    from holdings
    inner join products
        on holdings.product_id = products.product_id
),

-- snapshots whose look-back and horizon are both observed
snapshots as (
    select
        population.customer_id,
        population.month_index,
        population.snapshot_on,
        population.event_timestamp,
    from population
    cross join bounds
    where population.month_index + {{ horizon }} <= bounds.last_month_index
        and population.month_index >= bounds.first_month_index + {{ lookback }} - 1
),

pairs as (
    select
        snapshots.*,
        categories.category,
    from snapshots
    cross join categories
),

-- the last active month on or before the snapshot
last_active as (
    select
        pairs.*,
        active_months.month_index as last_active_month_index,
    from pairs
    asof left join active_months
        on pairs.customer_id = active_months.customer_id
        and pairs.category = active_months.category
        and pairs.month_index >= active_months.month_index
),

-- the first active month after the snapshot
next_active as (
    select
        last_active.*,
        active_months.month_index as next_active_month_index,
    from last_active
    asof left join active_months
        on last_active.customer_id = active_months.customer_id
        and last_active.category = active_months.category
        and last_active.month_index < active_months.month_index
),

in_population as (
    select * from next_active
    where last_active_month_index is null
        or last_active_month_index <= month_index - {{ lookback }}
),

final as (
    select
        in_population.customer_id,
        in_population.snapshot_on,
        in_population.event_timestamp,
        in_population.category,
        cast(in_population.month_index - in_population.last_active_month_index as integer)
            as months_since_category_activity,
        cast(coalesce(category_activity.count_products_owned, 0) as integer)
            as count_products_owned_in_category,
        cast(coalesce(category_activity.sum_spend_last_12_months, 0.0) as double)
            as sum_spend_category_last_12_months,
        cast(coalesce(in_population.next_active_month_index <= in_population.month_index + {{ horizon }}, false)
            as integer) as label,
    from in_population
    inner join customers
        on in_population.customer_id = customers.customer_id
    left join category_activity
        on customers.customer_key = category_activity.customer_key
        and in_population.category = category_activity.category
        and in_population.month_index = category_activity.month_index
)

select * from final
