{#-
  The candidates the ranker sees: every eligible candidate (int_candidates_eligible) of a catalogue of at
  most candidate_retrieval_above_products products; above it, a retrieval stage keeps each customer's
  candidate_retrieval_top_n eligible candidates with the best retrieval rank at the snapshot
  (int_products_ranked_by_recent_adoption), so that the candidate-grain marts, the pair features, the
  online candidate lists and the ranker's training rows all hold top_n rows per customer-month instead of
  the whole catalogue. The adoptions this leaves out are counted per ranking group in
  fct_candidate_retrieval_recall. A view: below the threshold it is the eligible table itself.
-#}
{{ config(materialized='view') }}
-- depends_on: {{ ref('int_products_keyed') }}  (the catalogue's size decides whether the stage is on)
-- depends_on: {{ ref('int_products_ranked_by_recent_adoption') }}  (the stage's ranking, when on)

with

eligible as (
    select * from {{ ref('int_candidates_eligible') }}
),

{%- if candidate_retrieval_is_active() %}

ranked as (
    select * from {{ ref('int_products_ranked_by_recent_adoption') }}
),

retrieved as (
    select eligible.*
    from eligible
    inner join ranked
        on eligible.product_key = ranked.product_key
        and eligible.month_index = ranked.month_index
    -- rank(), not row_number() (the same here: ranks are unique within a month): DuckDB turns a
    -- row_number() <= n filter into an aggregate that keeps each partition's top n whole rows in memory,
    -- and over every labelled month at once (fct_ranking_labels; 3,000 customers x 1,500 products, 35M
    -- eligible rows) it ran out of its 5.5 GB with 9 GB spilled; rank() stays a window, which spills
    qualify rank() over (
        partition by eligible.customer_key, eligible.month_index
        order by ranked.retrieval_rank
    ) <= {{ var('candidate_retrieval_top_n') | int }}
),

{%- else %}

-- the catalogue has at most candidate_retrieval_above_products products: every eligible candidate
retrieved as (
    select * from eligible
),

{%- endif %}

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
    from retrieved
)

select * from final
