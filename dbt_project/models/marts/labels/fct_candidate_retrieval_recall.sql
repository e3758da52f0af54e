{#-
  What the candidate retrieval stage (int_candidates_retrieved) leaves out, per ranking group (customer x
  labelled snapshot): of the customer's eligible candidates and of their adoptions (the ranking label's
  rule: is_adopted_within_horizon, is_past_burn_in), how many it kept. The ranker is trained and
  evaluated on the kept ones, so an adoption left out is one no ranker can find: training counts them
  in its end-to-end nDCG and the recall it reports. With the stage off every candidate is kept and the
  mart has no row. The eligible candidates and their adoptions are counted from the group's age-eligible
  products and int_population_holding_states, not from int_candidates_eligible's rows (with the stage
  on, only the products within the customer's reach).
-#}
-- depends_on: {{ ref('int_products_keyed') }}  (the catalogue's size decides whether the stage is on)
-- depends_on: {{ ref('int_customers_in_population') }}
-- depends_on: {{ ref('int_population_holding_states') }}
-- depends_on: {{ ref('int_candidates_retrieved') }}
-- depends_on: {{ ref('int_customers_keyed') }}
-- depends_on: {{ ref('int_snapshots_spined') }}
{%- if candidate_retrieval_is_active() %}

with

population as (
    select * from {{ ref('int_customers_in_population') }}
),

products as (
    select * from {{ ref('int_products_keyed') }}
),

states as (
    select * from {{ ref('int_population_holding_states') }}
),

retrieved as (
    select * from {{ ref('int_candidates_retrieved') }}
),

customers as (
    select * from {{ ref('int_customers_keyed') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

-- the ranking groups: population customers at labelled snapshots past their burn-in
groups as (
    select
        population.customer_key,
        population.month_index,
        population.age_years
    from population
    inner join customers
        on population.customer_key = customers.customer_key
    inner join spine
        on population.month_index = spine.month_index
    where spine.is_labelled
        and {{ is_past_burn_in('population.month_index', 'customers.joined_month_index') }}
),

products_unbounded as (
    select count(*) as count_products
    from products
    where not {{ has_age_bound('products.min_age', 'products.max_age') }}
),

-- the products each group is eligible for by age (all of those without a bound, the bounded ones whose
-- bound holds its age)
groups_eligible as (
    select
        groups.customer_key,
        groups.month_index,
        products_unbounded.count_products + count(products.product_key) as count_products_eligible
    from groups
    cross join products_unbounded
    left join products
        on {{ has_age_bound('products.min_age', 'products.max_age') }}
        and {{ is_age_eligible('groups.age_years', 'products.min_age', 'products.max_age') }}
    group by groups.customer_key, groups.month_index, products_unbounded.count_products
),

-- of those, the owned ones (no candidates) and the adopted ones (the ranking label's rule)
states_counted as (
    select
        customer_key,
        month_index,
        count(*) filter (where is_owned) as count_owned,
        count(*) filter (
            where not is_owned
            and {{ is_adopted_within_horizon('next_start_month_index', 'month_index') }}
        ) as count_adoptions
    from states
    group by all
),

retrieved_counted as (
    select
        customer_key,
        month_index,
        count(*) as count_candidates_retrieved,
        count(*) filter (
            where {{ is_adopted_within_horizon('next_start_month_index', 'month_index') }}
        ) as count_adoptions_retrieved
    from retrieved
    group by all
),

counted as (
    select
        groups_eligible.customer_key,
        groups_eligible.month_index,
        groups_eligible.count_products_eligible - coalesce(states_counted.count_owned, 0)
            as count_candidates_eligible,
        coalesce(retrieved_counted.count_candidates_retrieved, 0) as count_candidates_retrieved,
        coalesce(states_counted.count_adoptions, 0) as count_adoptions,
        coalesce(retrieved_counted.count_adoptions_retrieved, 0) as count_adoptions_retrieved
    from groups_eligible
    left join states_counted
        on groups_eligible.customer_key = states_counted.customer_key
        and groups_eligible.month_index = states_counted.month_index
    left join retrieved_counted
        on groups_eligible.customer_key = retrieved_counted.customer_key
        and groups_eligible.month_index = retrieved_counted.month_index
),

final as (
    select
        customers.customer_id,
        spine.snapshot_on,
        spine.event_timestamp,
        cast(counted.count_candidates_eligible as bigint) as count_candidates_eligible,
        cast(counted.count_candidates_retrieved as bigint) as count_candidates_retrieved,
        cast(counted.count_adoptions as bigint) as count_adoptions,
        cast(counted.count_adoptions_retrieved as bigint) as count_adoptions_retrieved
    from counted
    inner join customers
        on counted.customer_key = customers.customer_key
    inner join spine
        on counted.month_index = spine.month_index
    where counted.count_candidates_eligible > 0
)

{%- else %}

with

final as (
    select
        cast(null as {{ dbt.type_string() }}) as customer_id,
        cast(null as date) as snapshot_on,
        cast(null as timestamp) as event_timestamp,
        cast(null as bigint) as count_candidates_eligible,
        cast(null as bigint) as count_candidates_retrieved,
        cast(null as bigint) as count_adoptions,
        cast(null as bigint) as count_adoptions_retrieved
    from {{ ref('int_snapshots_spined') }}
    where 1 = 0
)

{%- endif %}

select * from final
