{#-
  Stored with integer keys only: ~20 rows per customer-month, so the write must be cheap; the marts join
  the string ids (and the customer's segment, int_customers_keyed) back while streaming to parquet (at 1M
  customers x 24 months, the segment's strings stored on every candidate took 12 s of the 41 s of CPU
  writing the table).
-#}
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

-- the owned set a customer's cross-sell features come from (null when the customer owns nothing)
population_sets as (
    select
        population.customer_key,
        population.month_index,
        population.age_years,
        -- how many products the customer owns, on a log2 scale: 0, 1, 2-3, 4-7, 8-15 ...
        cast(
            case when population.count_products_owned = 0 then 0 else floor(log2(population.count_products_owned)) + 1 end
            as integer
        ) as ownership_breadth,
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
    inner join products
        on (products.min_age is null and products.max_age is null)
        or (
            population_sets.age_years is not null
            and population_sets.age_years >= coalesce(products.min_age, population_sets.age_years)
            and population_sets.age_years <= coalesce(products.max_age, population_sets.age_years)
        )
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
