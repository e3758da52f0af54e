{#-
  The category propensity task's labels: one row of fct_category_propensity_population (a customer x
  snapshot x category the customer was not active in during the look-back) whose
  category_propensity_horizon_months months after the snapshot are observed; label = 1 iff the customer
  is active in the category (int_customer_category_months_active) within the horizon.
-#}
{%- set horizon = var('category_propensity_horizon_months') | int -%}

with

candidates as (
    select * from {{ ref('fct_category_propensity_population') }}
),

customers as (
    select * from {{ ref('int_customers_keyed') }}
),

categories as (
    select * from {{ ref('int_categories_keyed') }}
),

active_months as (
    select * from {{ ref('int_customer_category_months_active') }}
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

-- the active months under the candidates' string ids: joined back once on the ~15M active rows rather
-- than keying the ~80M candidates (at 1M customers x 24 months: 55-60 s instead of 77 s, the same rows)
active_months_identified as (
    select
        customers.customer_id,
        categories.category,
        active_months.month_index
    from active_months
    inner join customers
        on active_months.customer_key = customers.customer_key
    inner join categories
        on active_months.category_key = categories.category_key
),

observed as (
    select
        candidates.*
    from candidates
    cross join bounds
    where candidates.month_index + {{ horizon }} <= bounds.last_month_index
),

-- the first active month after the snapshot
next_active as (
    {{ point_in_time_join(
        left='observed', right='active_months_identified', by=['customer_id', 'category'],
        left_time='month_index', right_time='month_index', direction='after',
        columns={'next_active_month_index': 'month_index'},
        left_keys=['customer_id', 'month_index', 'category'],
    ) }}
),

final as (
    select
        customer_id,
        snapshot_on,
        event_timestamp,
        category,
        months_since_category_activity,
        count_products_owned_in_category,
        sum_spend_category_last_12_months,
        cast(coalesce(next_active_month_index <= month_index + {{ horizon }}, false) as integer) as label
    from next_active
)

select * from final
