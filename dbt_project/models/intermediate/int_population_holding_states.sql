{#-
  The candidacy of every population customer x snapshot for the products it has a holding history with
  (int_holdings_segmented: owned at the snapshot, or not owned with a past or future holding) and is
  eligible for by age: whether it owns the product at the snapshot and, if not, the month of its next
  start (future information, for counting adoptions only) and of its last end. A customer-product pair
  never held is not here: it is a candidate that was never adopted.

  The sparse side of candidate counting: a product's candidates at a snapshot are its age-eligible
  population minus the rows here that own it, its adoptions the rows here that do not own it and start it
  later. So the adoption rates (int_product_adoptions_counted) and the retrieval stage's recall
  (fct_candidate_retrieval_recall) are counted without expanding every customer x product, as
  int_candidates_eligible would at a large catalogue. A view: read by those two models only.
-#}
{{ config(materialized='view') }}

with

population as (
    select * from {{ ref('int_customers_in_population') }}
),

segments as (
    select * from {{ ref('int_holdings_segmented') }}
),

products as (
    select * from {{ ref('int_products_keyed') }}
),

-- at most one segment of a pair contains the snapshot month (segments are disjoint)
located as (
    select
        population.customer_key,
        segments.product_key,
        population.month_index,
        {{ ownership_breadth('population.count_products_owned') }} as ownership_breadth,
        segments.is_owned,
        segments.next_start_month_index,
        segments.last_end_month_index
    from population
    inner join segments
        on population.customer_key = segments.customer_key
        and population.month_index >= segments.segment_start_month_index
        and population.month_index < segments.segment_end_month_index
    inner join products
        on segments.product_key = products.product_key
        and {{ is_age_eligible('population.age_years', 'products.min_age', 'products.max_age') }}
),

final as (
    select
        customer_key,
        product_key,
        month_index,
        ownership_breadth,
        is_owned,
        next_start_month_index,
        last_end_month_index
    from located
)

select * from final
