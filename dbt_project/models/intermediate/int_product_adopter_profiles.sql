{#-
  Who adopts each product, per snapshot s: the age at which customers started it, over every holding
  start on or before s of a customer with a known birth year, shrunk towards the population's age
  distribution at s by adopter_profile_prior_strength pseudo-adopters (so a new or rare product looks like
  the population until its adopters say otherwise); and the population's age profile itself, which
  age_log_lift_among_adopters compares the adopters' with.
-#}
{%- set prior = var('adopter_profile_prior_strength') | float -%}

with

holdings as (
    select * from {{ ref('stg_raw__holdings') }}
),

customers as (
    select * from {{ ref('stg_raw__customers') }}
),

products as (
    select * from {{ ref('int_products_keyed') }}
),

population as (
    select * from {{ ref('int_customers_in_population') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

starts_monthly as (
    select
        products.product_key,
        {{ month_index('holdings.started_on') }} as month_index,
        count(*) as count_starts,
        sum(year(holdings.started_on) - customers.birth_year) as sum_age,
        sum(power(year(holdings.started_on) - customers.birth_year, 2)) as sum_age_squared
    from holdings
    inner join customers
        on holdings.customer_id = customers.customer_id
    inner join products
        on holdings.product_id = products.product_id
    where customers.birth_year is not null
    group by all
),

starts_cumulative as (
    select
        products.product_key,
        spine.month_index,
        coalesce(sum(starts_monthly.count_starts), 0) as count_starts,
        coalesce(sum(starts_monthly.sum_age), 0) as sum_age,
        coalesce(sum(starts_monthly.sum_age_squared), 0) as sum_age_squared
    from products
    cross join spine
    left join starts_monthly
        on products.product_key = starts_monthly.product_key
        and starts_monthly.month_index <= spine.month_index
    group by all
),

population_ages as (
    select
        month_index,
        -- from exact integer sums (var_pop combines its threads' partial results in no fixed order)
        sum(age_years) / count(age_years) as mean_age,
        sum(age_years * age_years) / count(age_years) - power(sum(age_years) / count(age_years), 2)
            as variance_age
    from population
    where age_years is not null
    group by all
),

final as (
    select
        starts_cumulative.product_key,
        starts_cumulative.month_index,
        cast(starts_cumulative.count_starts as integer) as count_adopters_with_age,
        cast(
            (starts_cumulative.sum_age + {{ prior }} * population_ages.mean_age)
            / (starts_cumulative.count_starts + {{ prior }}) as double
        ) as mean_adopter_age_years,
        cast(sqrt(greatest(
            (
                starts_cumulative.sum_age_squared
                + {{ prior }} * (population_ages.variance_age + power(population_ages.mean_age, 2))
            ) / (starts_cumulative.count_starts + {{ prior }})
            - power(
                (starts_cumulative.sum_age + {{ prior }} * population_ages.mean_age)
                / (starts_cumulative.count_starts + {{ prior }}), 2
            ),
            1.0
        )) as double) as sd_adopter_age_years,
        cast(population_ages.mean_age as double) as mean_population_age_years,
        cast(sqrt(greatest(population_ages.variance_age, 1.0)) as double) as sd_population_age_years
    from starts_cumulative
    inner join population_ages
        on starts_cumulative.month_index = population_ages.month_index
)

select * from final
