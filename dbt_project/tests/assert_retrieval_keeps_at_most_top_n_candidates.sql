{#-
  With the candidate retrieval stage on (int_candidates_retrieved), no customer-month keeps more than
  candidate_retrieval_top_n candidates, and each keeps its min(top_n, eligible) eligible candidates of
  best retrieval_rank (so exactly those). With it off there is nothing to
  check (the view is the eligible table).
-#}
-- depends_on: {{ ref('int_products_keyed') }}  (the catalogue's size decides whether the stage is on)
-- depends_on: {{ ref('int_candidates_retrieved') }}
-- depends_on: {{ ref('int_candidates_eligible') }}
-- depends_on: {{ ref('int_products_ranked_by_recent_adoption') }}
{%- set top_n = var('candidate_retrieval_top_n') | int %}

{%- if candidate_retrieval_is_active() %}

with

retrieved as (
    select * from {{ ref('int_candidates_retrieved') }}
    where {{ customer_sample('customer_key') }}
),

eligible as (
    select * from {{ ref('int_candidates_eligible') }}
    where {{ customer_sample('customer_key') }}
),

ranked as (
    select * from {{ ref('int_products_ranked_by_recent_adoption') }}
),

-- each retrieved candidate's place among the customer's eligible candidates
placed as (
    select
        eligible.customer_key,
        eligible.product_key,
        eligible.month_index,
        count(*) over (partition by eligible.customer_key, eligible.month_index) as count_eligible,
        row_number() over (
            partition by eligible.customer_key, eligible.month_index order by ranked.retrieval_rank
        ) as place
    from eligible
    inner join ranked
        on eligible.product_key = ranked.product_key
        and eligible.month_index = ranked.month_index
),

too_many as (
    select
        customer_key,
        month_index,
        'more than {{ top_n }} candidates kept' as problem
    from retrieved
    group by all
    having count(*) > {{ top_n }}
),

too_few as (
    select
        placed.customer_key,
        placed.month_index,
        'fewer than min(top_n, eligible) candidates kept' as problem
    from placed
    left join retrieved
        on placed.customer_key = retrieved.customer_key
        and placed.product_key = retrieved.product_key
        and placed.month_index = retrieved.month_index
    where placed.place <= {{ top_n }} and retrieved.product_key is null
),

final as (
    select * from too_many
    union all
    select * from too_few
)

select * from final

{%- else %}

select month_index as customer_key, month_index, 'nothing to check' as problem
from {{ ref('int_products_ranked_by_recent_adoption') }}
where 1 = 0

{%- endif %}
