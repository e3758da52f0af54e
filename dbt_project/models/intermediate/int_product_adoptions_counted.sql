{#-
  The one definition of "a candidate adopted the product": per product, ownership breadth and snapshot
  month m, the candidates (eligible, not owning it at m) and how many of them started a holding of it in
  the month after m, or within 3 or 12 months. Future information relative to m: the models built on it
  (int_product_adoptions_aggregated, int_product_adoptions_by_breadth) only use it shifted past the window.

  Counted without expanding every customer x product: a product's candidates are its age-eligible
  population (int_customers_in_population, counted per breadth and age) minus the rows of
  int_population_holding_states that own it, and its adoptions are the rows there that do not own it and
  start it later. The same counts as grouping int_candidates_eligible's rows, which with a large
  catalogue's retrieval stage on holds only the products within each customer's reach.
-#}

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

population_counted as (
    select
        month_index,
        {{ ownership_breadth('count_products_owned') }} as ownership_breadth,
        age_years,
        count(*) as count_customers
    from population
    group by all
),

population_by_breadth as (
    select
        month_index,
        ownership_breadth,
        sum(count_customers) as count_customers
    from population_counted
    group by all
),

-- the population eligible for each product: everyone for a product without an age bound, those of an
-- age inside the bound for the others (a few products, so the age-level rows join only them)
eligible_counted as (
    select
        products.product_key,
        population_by_breadth.ownership_breadth,
        population_by_breadth.month_index,
        population_by_breadth.count_customers as count_eligible
    from products
    cross join population_by_breadth
    where not {{ has_age_bound('products.min_age', 'products.max_age') }}
    union all
    select
        products.product_key,
        population_counted.ownership_breadth,
        population_counted.month_index,
        sum(population_counted.count_customers) as count_eligible
    from products
    inner join population_counted
        on {{ has_age_bound('products.min_age', 'products.max_age') }}
        and {{ is_age_eligible('population_counted.age_years', 'products.min_age', 'products.max_age') }}
    group by all
),

states_counted as (
    select
        product_key,
        ownership_breadth,
        month_index,
        count(*) filter (where is_owned) as count_owned,
        count(*) filter (where not is_owned and next_start_month_index <= month_index + 1)
            as count_adopted_next_month,
        count(*) filter (where not is_owned and next_start_month_index <= month_index + 3)
            as count_adopted_within_3_months,
        count(*) filter (where not is_owned and next_start_month_index <= month_index + 12)
            as count_adopted_within_12_months
    from states
    group by all
),

counted as (
    select
        eligible_counted.product_key,
        eligible_counted.ownership_breadth,
        eligible_counted.month_index,
        eligible_counted.count_eligible - coalesce(states_counted.count_owned, 0) as count_candidates,
        coalesce(states_counted.count_adopted_next_month, 0) as count_adopted_next_month,
        coalesce(states_counted.count_adopted_within_3_months, 0) as count_adopted_within_3_months,
        coalesce(states_counted.count_adopted_within_12_months, 0) as count_adopted_within_12_months
    from eligible_counted
    left join states_counted
        on eligible_counted.product_key = states_counted.product_key
        and eligible_counted.ownership_breadth = states_counted.ownership_breadth
        and eligible_counted.month_index = states_counted.month_index
),

final as (
    select
        product_key,
        ownership_breadth,
        cast(month_index as integer) as month_index,
        cast(count_candidates as integer) as count_candidates,
        cast(count_adopted_next_month as integer) as count_adopted_next_month,
        cast(count_adopted_within_3_months as integer) as count_adopted_within_3_months,
        cast(count_adopted_within_12_months as integer) as count_adopted_within_12_months
    from counted
    where count_candidates > 0
)

select * from final
