{#-
  Stored with integer keys only: ~20 rows per customer-month, so the write must be cheap; the marts join
  the string ids (and the customer's segment, int_customers_keyed) back while streaming to parquet (at 1M
  customers x 24 months, the segment's strings stored on every candidate took 12 s of the 41 s of CPU
  writing the table).

  With a large catalogue's candidate retrieval stage on (candidate_retrieval_is_active), a customer-month
  is expanded only over the products within its reach in the stage's ranking
  (int_products_ranked_by_recent_adoption): rank <= candidate_retrieval_top_n + the products it owns +
  the products its age makes it ineligible for. At most that many products of better rank are owned or
  ineligible, so the reach holds the customer's top_n eligible products of best rank, which
  int_candidates_retrieved keeps, and every customer-month with an eligible product keeps one. Without
  it, Complete Journey's 92,331 products would be ~2.6 G rows here. Nothing else reads this table's rows
  to count candidates: those counts come from int_population_holding_states and the population.
-#}
-- depends_on: {{ ref('int_products_keyed') }}  (the catalogue's size decides whether the stage is on)
-- depends_on: {{ ref('int_products_ranked_by_recent_adoption') }}  (the stage's ranking, when on)

with

population as (
    select * from {{ ref('int_customers_in_population') }}
),

products as (
    select * from {{ ref('int_products_keyed') }}
),

segments as (
    select * from {{ ref('int_holdings_segmented') }}
),

owned_sets as (
    select * from {{ ref('int_customer_owned_sets') }}
),

{%- if candidate_retrieval_is_active() %}

ranked as (
    select * from {{ ref('int_products_ranked_by_recent_adoption') }}
),

-- per age (null = unknown) in the population: the products with an age bound it is not eligible for
ages_ineligible as (
    select
        ages.age_years,
        count(products.product_key) as count_products_ineligible
    from (select distinct age_years from population) as ages
    left join products
        on {{ has_age_bound('products.min_age', 'products.max_age') }}
        and not {{ is_age_eligible('ages.age_years', 'products.min_age', 'products.max_age') }}
    group by ages.age_years
),

-- the products of rank <= reach hold the customer's top_n eligible ones: at most its owned and its
-- ineligible products rank better than them (count_products_owned counts holdings, so it is at least
-- the number of products owned)
reach as (
    select
        population.customer_key,
        population.month_index,
        {{ var('candidate_retrieval_top_n') | int }}
            + coalesce(population.count_products_owned, 0)
            + ages_ineligible.count_products_ineligible as retrieval_reach
    from population
    inner join ages_ineligible
        on population.age_years is not distinct from ages_ineligible.age_years
),

reachable as (
    select
        reach.customer_key,
        reach.month_index,
        ranked.product_key
    from reach
    inner join ranked
        on reach.month_index = ranked.month_index
        and ranked.retrieval_rank <= reach.retrieval_reach
),

{%- endif %}

-- the owned set a customer's cross-sell features come from (null when the customer owns nothing)
population_sets as (
    select
        population.customer_key,
        population.month_index,
        population.age_years,
        {{ ownership_breadth('population.count_products_owned') }} as ownership_breadth,
        owned_sets.owned_set_id,
        owned_sets.is_latest_start_recent
    from population
    left join owned_sets
        on population.customer_key = owned_sets.customer_key
        and population.month_index = owned_sets.month_index
),

-- a product with an age bound needs a known age inside the bounds
eligible as (
    select
        population_sets.customer_key,
        products.product_key,
        population_sets.month_index,
        population_sets.age_years,
        population_sets.ownership_breadth,
        population_sets.owned_set_id,
        population_sets.is_latest_start_recent
    from population_sets
    {%- if candidate_retrieval_is_active() %}
    inner join reachable
        on population_sets.customer_key = reachable.customer_key
        and population_sets.month_index = reachable.month_index
    inner join products
        on reachable.product_key = products.product_key
        and {{ is_age_eligible('population_sets.age_years', 'products.min_age', 'products.max_age') }}
    {%- else %}
    inner join products
        on {{ is_age_eligible('population_sets.age_years', 'products.min_age', 'products.max_age') }}
    {%- endif %}
),

-- at most one segment contains the snapshot month (segments are disjoint)
located as (
    select
        eligible.*,
        coalesce(segments.is_owned, false) as is_owned,
        segments.next_start_month_index,
        segments.last_end_month_index
    from eligible
    left join segments
        on eligible.customer_key = segments.customer_key
        and eligible.product_key = segments.product_key
        and eligible.month_index >= segments.segment_start_month_index
        and eligible.month_index < segments.segment_end_month_index
),

final as (
    select
        customer_key,
        product_key,
        month_index,
        age_years,
        ownership_breadth,
        owned_set_id,
        is_latest_start_recent,
        next_start_month_index,
        last_end_month_index
    from located
    where not is_owned
)

select * from final
