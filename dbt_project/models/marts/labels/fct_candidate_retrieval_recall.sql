{#-
  What the candidate retrieval stage (int_candidates_retrieved) leaves out, per ranking group (customer x
  labelled snapshot): of the customer's eligible candidates and of their adoptions (the ranking label's
  rule: is_adopted_within_horizon, is_past_burn_in), how many it kept. The ranker is trained and
  evaluated on the kept ones, so an adoption left out is one no ranker can find: training counts them
  in its end-to-end nDCG and the recall it reports. With the stage off every candidate is kept and the
  mart has no row.
-#}
-- depends_on: {{ ref('int_products_keyed') }}  (the catalogue's size decides whether the stage is on)
-- depends_on: {{ ref('int_candidates_eligible') }}
-- depends_on: {{ ref('int_candidates_retrieved') }}
-- depends_on: {{ ref('int_customers_keyed') }}
-- depends_on: {{ ref('int_snapshots_spined') }}

{%- if candidate_retrieval_is_active() %}

with

eligible as (
    select * from {{ ref('int_candidates_eligible') }}
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

labelled as (
    select
        eligible.customer_key,
        eligible.month_index,
        retrieved.product_key is not null as is_retrieved,
        {{ is_adopted_within_horizon('eligible.next_start_month_index', 'eligible.month_index') }} as is_adopted
    from eligible
    inner join customers
        on eligible.customer_key = customers.customer_key
    inner join spine
        on eligible.month_index = spine.month_index
    left join retrieved
        on eligible.customer_key = retrieved.customer_key
        and eligible.product_key = retrieved.product_key
        and eligible.month_index = retrieved.month_index
    where spine.is_labelled
        and {{ is_past_burn_in('eligible.month_index', 'customers.joined_month_index') }}
),

counted as (
    select
        customer_key,
        month_index,
        count(*) as count_candidates_eligible,
        count(*) filter (where is_retrieved) as count_candidates_retrieved,
        count(*) filter (where is_adopted) as count_adoptions,
        count(*) filter (where is_adopted and is_retrieved) as count_adoptions_retrieved
    from labelled
    group by all
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
