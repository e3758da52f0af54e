{#-
  With the candidate retrieval stage on (int_candidates_retrieved), each customer-month keeps exactly its
  min(top_n, eligible) eligible candidates of best retrieval_rank, counted without
  int_candidates_eligible (which with the stage on holds only each customer's reach, so it cannot be the
  judge): every kept candidate is eligible by age and not owned (int_population_holding_states); at
  most top_n are kept; the eligible products of rank up to the worst kept one are exactly the kept ones
  (none of better rank was passed over); and a population customer-month keeping fewer than top_n
  (none included) keeps all its eligible products. Eligible products up to a rank = the products without an age bound up to it, plus
  the bounded ones whose bound holds the customer's age, minus those owned. With the stage off there is
  nothing to check (the view is the eligible table).
-#}
-- depends_on: {{ ref('int_products_keyed') }}  (the catalogue's size decides whether the stage is on)
-- depends_on: {{ ref('int_candidates_retrieved') }}
-- depends_on: {{ ref('int_population_holding_states') }}
-- depends_on: {{ ref('int_customers_in_population') }}
-- depends_on: {{ ref('int_products_ranked_by_recent_adoption') }}
{%- set top_n = var('candidate_retrieval_top_n') | int %}

{%- if candidate_retrieval_is_active() %}

with

retrieved as (
    select * from {{ ref('int_candidates_retrieved') }}
    where {{ customer_sample('customer_key') }}
),

states as (
    select * from {{ ref('int_population_holding_states') }}
    where {{ customer_sample('customer_key') }}
),

population as (
    select * from {{ ref('int_customers_in_population') }}
    where {{ customer_sample('customer_key') }}
),

ranked as (
    select * from {{ ref('int_products_ranked_by_recent_adoption') }}
),

products as (
    select * from {{ ref('int_products_keyed') }}
),

kept as (
    select
        retrieved.customer_key,
        retrieved.product_key,
        retrieved.month_index,
        retrieved.age_years,
        ranked.retrieval_rank,
        products.min_age,
        products.max_age,
        coalesce(states.is_owned, false) as is_owned
    from retrieved
    inner join ranked
        on retrieved.product_key = ranked.product_key
        and retrieved.month_index = ranked.month_index
    inner join products
        on retrieved.product_key = products.product_key
    left join states
        on retrieved.customer_key = states.customer_key
        and retrieved.product_key = states.product_key
        and retrieved.month_index = states.month_index
),

kept_counted as (
    select
        customer_key,
        month_index,
        count(*) as count_kept,
        max(retrieval_rank) as worst_kept_rank
    from kept
    group by all
),

-- every population customer-month of the sample, with what it kept (none: 0, no worst rank)
groups as (
    select
        population.customer_key,
        population.month_index,
        population.age_years,
        coalesce(kept_counted.count_kept, 0) as count_kept,
        kept_counted.worst_kept_rank
    from population
    left join kept_counted
        on population.customer_key = kept_counted.customer_key
        and population.month_index = kept_counted.month_index
),

-- per snapshot and rank: the products without an age bound up to that rank
ranked_unbounded as (
    select
        ranked.month_index,
        ranked.retrieval_rank,
        sum(case when {{ has_age_bound('products.min_age', 'products.max_age') }} then 0 else 1 end) over (
            partition by ranked.month_index order by ranked.retrieval_rank
            rows between unbounded preceding and current row
        ) as count_unbounded_up_to,
        count(*) over (partition by ranked.month_index) as count_ranked
    from ranked
    inner join products
        on ranked.product_key = products.product_key
),

-- each group at two ranks: its worst kept one and the whole catalogue
thresholds as (
    select
        groups.customer_key,
        groups.month_index,
        groups.age_years,
        groups.count_kept,
        'up_to_worst_kept' as threshold,
        groups.worst_kept_rank as up_to_rank
    from groups
    where groups.count_kept > 0
    union all
    select
        groups.customer_key,
        groups.month_index,
        groups.age_years,
        groups.count_kept,
        'catalogue' as threshold,
        max(ranked_unbounded.count_ranked) as up_to_rank
    from groups
    inner join ranked_unbounded
        on groups.month_index = ranked_unbounded.month_index
    group by all
),

bounded_eligible as (
    select
        thresholds.customer_key,
        thresholds.month_index,
        thresholds.threshold,
        count(*) as count_products
    from thresholds
    inner join ranked
        on thresholds.month_index = ranked.month_index
        and ranked.retrieval_rank <= thresholds.up_to_rank
    inner join products
        on ranked.product_key = products.product_key
        and {{ has_age_bound('products.min_age', 'products.max_age') }}
        and {{ is_age_eligible('thresholds.age_years', 'products.min_age', 'products.max_age') }}
    group by all
),

owned_eligible as (
    select
        thresholds.customer_key,
        thresholds.month_index,
        thresholds.threshold,
        count(*) as count_products
    from thresholds
    inner join states
        on thresholds.customer_key = states.customer_key
        and thresholds.month_index = states.month_index
        and states.is_owned
    inner join ranked
        on states.product_key = ranked.product_key
        and states.month_index = ranked.month_index
        and ranked.retrieval_rank <= thresholds.up_to_rank
    group by all
),

eligible_up_to as (
    select
        thresholds.customer_key,
        thresholds.month_index,
        thresholds.threshold,
        thresholds.count_kept,
        ranked_unbounded.count_unbounded_up_to
            + coalesce(bounded_eligible.count_products, 0)
            - coalesce(owned_eligible.count_products, 0) as count_eligible
    from thresholds
    inner join ranked_unbounded
        on thresholds.month_index = ranked_unbounded.month_index
        and thresholds.up_to_rank = ranked_unbounded.retrieval_rank
    left join bounded_eligible
        on thresholds.customer_key = bounded_eligible.customer_key
        and thresholds.month_index = bounded_eligible.month_index
        and thresholds.threshold = bounded_eligible.threshold
    left join owned_eligible
        on thresholds.customer_key = owned_eligible.customer_key
        and thresholds.month_index = owned_eligible.month_index
        and thresholds.threshold = owned_eligible.threshold
),

not_eligible as (
    select
        customer_key,
        month_index,
        'a kept candidate is owned or not eligible by age' as problem
    from kept
    where is_owned or not {{ is_age_eligible('age_years', 'min_age', 'max_age') }}
),

too_many as (
    select
        customer_key,
        month_index,
        'more than {{ top_n }} candidates kept' as problem
    from groups
    where count_kept > {{ top_n }}
),

passed_over as (
    select
        customer_key,
        month_index,
        'an eligible product of better rank than a kept one was not kept' as problem
    from eligible_up_to
    where threshold = 'up_to_worst_kept' and count_eligible <> count_kept
),

too_few as (
    select
        customer_key,
        month_index,
        'fewer than min(top_n, eligible) candidates kept' as problem
    from eligible_up_to
    where threshold = 'catalogue' and count_kept < {{ top_n }} and count_eligible <> count_kept
),

final as (
    select * from not_eligible
    union all
    select * from too_many
    union all
    select * from passed_over
    union all
    select * from too_few
)

select * from final

{%- else %}

select month_index as customer_key, month_index, 'nothing to check' as problem
from {{ ref('int_products_ranked_by_recent_adoption') }}
where 1 = 0

{%- endif %}
