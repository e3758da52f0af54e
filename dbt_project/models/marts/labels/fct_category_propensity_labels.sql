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

-- the snapshots whose horizon holds an active month: each active month labels the horizon's snapshots
-- before it (one shifted copy per horizon month; their union is distinct, as the active months are).
-- Matched to the candidates by an equality join instead of a point-in-time join to the next active
-- month: at 1M customers x 24 months 17 s instead of 40 s (the string-keyed as-of join sorted and
-- spilled the ~80M candidates)
labelled_positive as (
    {%- for offset in range(1, horizon + 1) %}
    select
        customer_id,
        category,
        month_index - {{ offset }} as month_index
    from active_months_identified
    {{- '\n    union' if not loop.last }}
    {%- endfor %}
),

labelled as (
    select
        observed.*,
        labelled_positive.month_index is not null as is_labelled_positive
    from observed
    left join labelled_positive
        on observed.customer_id = labelled_positive.customer_id
        and observed.category = labelled_positive.category
        and observed.month_index = labelled_positive.month_index
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
        cast(is_labelled_positive as integer) as label
    from labelled
)

select * from final
