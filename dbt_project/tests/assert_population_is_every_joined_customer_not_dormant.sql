{#-
  The population rule, recomputed by brute force from the staged raw rows for a hash sample of customers:
  at each snapshot s, a customer who joined on or before s is in the population unless dormant (held a
  product on or before s, owns none at s, no transaction in the activity_lookback_months months ending at
  s); a prospect who never held one stays in for prospect_window_months after the join month when set.
  Returns every customer x snapshot on which the brute force and feat_customer_monthly disagree, and every
  population customer x snapshot with an eligible product not owned but no eligible candidate row
  (int_candidates_eligible). With a large catalogue's retrieval stage on, that table holds only each
  customer's reach, so the open products are counted instead and compared with the eligible candidates
  of fct_candidate_retrieval_recall at the labelled snapshots.
-#}
{%- set lookback = var('activity_lookback_months') | int -%}
{%- set prospect_window = var('prospect_window_months') -%}
-- depends_on: {{ ref('int_products_keyed') }}  (the catalogue's size decides whether the stage is on)
-- depends_on: {{ ref('fct_candidate_retrieval_recall') }}

with

customers as (
    select * from {{ ref('stg_raw__customers') }}
),

holdings as (
    select * from {{ ref('stg_raw__holdings') }}
),

transactions as (
    select * from {{ ref('stg_raw__transactions') }}
),

products as (
    select * from {{ ref('stg_raw__products') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

customer_features as (
    select * from {{ ref('feat_customer_monthly') }}
),

-- the eligible candidates, before a large catalogue's retrieval stage keeps the best of them
eligible as (
    select * from {{ ref('int_candidates_eligible') }}
),

customers_keyed as (
    select * from {{ ref('int_customers_keyed') }}
),

products_keyed as (
    select * from {{ ref('int_products_keyed') }}
),

sampled_customers as (
    select *
    from customers
    order by {{ stable_hash('customer_id') }}
    limit {{ var('leakage_test_sample_customers') }}
),

joined as (
    select
        sampled_customers.customer_id,
        sampled_customers.joined_on,
        sampled_customers.birth_year,
        spine.snapshot_on,
        spine.event_timestamp
    from sampled_customers
    inner join spine
        on sampled_customers.joined_on <= spine.snapshot_on
),

states as (
    select
        joined.customer_id,
        joined.snapshot_on,
        joined.event_timestamp,
        joined.joined_on,
        exists (
            select 1 from holdings
            where holdings.customer_id = joined.customer_id
                and holdings.started_on <= joined.snapshot_on
                and (holdings.ended_on is null or joined.snapshot_on < holdings.ended_on)
        ) as owns_something,
        exists (
            select 1 from holdings
            where holdings.customer_id = joined.customer_id
                and holdings.started_on <= joined.snapshot_on
        ) as held_something,
        exists (
            select 1 from transactions
            where transactions.customer_id = joined.customer_id
                and transactions.occurred_on <= joined.snapshot_on
                and transactions.occurred_on > last_day(joined.snapshot_on - interval {{ lookback }} month)
        ) as active_in_lookback
    from joined
),

expected as (
    select customer_id, event_timestamp, snapshot_on
    from states
    where owns_something
        or active_in_lookback
        or (
            not held_something
            {%- if prospect_window is not none %}
            and {{ month_index('snapshot_on') }} - {{ month_index('joined_on') }} < {{ prospect_window | int }}
            {%- endif %}
        )
),

actual as (
    select customer_features.customer_id, customer_features.event_timestamp
    from customer_features
    semi join sampled_customers
        using (customer_id)
),

missing as (
    select customer_id, event_timestamp, 'in the population by the rule, not in feat_customer_monthly' as problem
    from (select customer_id, event_timestamp from expected except select * from actual)
),

extra as (
    select customer_id, event_timestamp, 'in feat_customer_monthly, not in the population by the rule' as problem
    from (select * from actual except select customer_id, event_timestamp from expected)
),

{%- if not candidate_retrieval_is_active() %}

-- a population customer with an eligible product not owned at s must have that candidate row
open_products as (
    select
        expected.customer_id,
        expected.event_timestamp,
        products.product_id
    from expected
    inner join sampled_customers
        using (customer_id)
    cross join products
    where (
            (products.min_age is null and products.max_age is null)
            or (
                sampled_customers.birth_year is not null
                and year(expected.snapshot_on) - sampled_customers.birth_year
                    between coalesce(products.min_age, -1000) and coalesce(products.max_age, 1000)
            )
        )
        and not exists (
            select 1 from holdings
            where holdings.customer_id = expected.customer_id
                and holdings.product_id = products.product_id
                and holdings.started_on <= expected.snapshot_on
                and (holdings.ended_on is null or expected.snapshot_on < holdings.ended_on)
        )
),

without_candidate as (
    select customer_id, event_timestamp, 'an open product has no candidate row' as problem
    from (
        select customer_id, event_timestamp, product_id from open_products
        except
        -- only the sample's candidates: reading all of fct_candidates was 65 of the test's 73 s at 1M
        select customers_keyed.customer_id, spine.event_timestamp, products_keyed.product_id
        from eligible
        inner join customers_keyed
            on eligible.customer_key = customers_keyed.customer_key
        inner join products_keyed
            on eligible.product_key = products_keyed.product_key
        inner join spine
            on eligible.month_index = spine.month_index
        semi join sampled_customers
            on customers_keyed.customer_id = sampled_customers.customer_id
    )
),

{%- else %}

-- a large catalogue (retrieval stage on): int_candidates_eligible holds only each customer's reach, so
-- the open products are counted, not listed (every customer x product would be billions of rows), and
-- checked against the retrieval recall mart's eligible candidates at each labelled snapshot past the
-- customer's burn-in (assert_retrieval_keeps_at_most_top_n_candidates checks which ones are kept)
recall as (
    select * from {{ ref('fct_candidate_retrieval_recall') }}
),

products_open_to_age as (
    select
        expected.customer_id,
        expected.event_timestamp,
        expected.snapshot_on,
        count(*) as count_products
    from expected
    inner join sampled_customers
        using (customer_id)
    cross join products
    where (products.min_age is not null or products.max_age is not null)
        and sampled_customers.birth_year is not null
        and year(expected.snapshot_on) - sampled_customers.birth_year
            between coalesce(products.min_age, -1000) and coalesce(products.max_age, 1000)
    group by all
),

products_owned as (
    select
        expected.customer_id,
        expected.event_timestamp,
        count(distinct holdings.product_id) as count_products
    from expected
    inner join sampled_customers
        using (customer_id)
    inner join holdings
        on holdings.customer_id = expected.customer_id
        and holdings.started_on <= expected.snapshot_on
        and (holdings.ended_on is null or expected.snapshot_on < holdings.ended_on)
    inner join products
        on holdings.product_id = products.product_id
        and (
            (products.min_age is null and products.max_age is null)
            or (
                sampled_customers.birth_year is not null
                and year(expected.snapshot_on) - sampled_customers.birth_year
                    between coalesce(products.min_age, -1000) and coalesce(products.max_age, 1000)
            )
        )
    group by all
),

open_counted as (
    select
        expected.customer_id,
        expected.event_timestamp,
        (select count(*) from products where products.min_age is null and products.max_age is null)
            + coalesce(products_open_to_age.count_products, 0)
            - coalesce(products_owned.count_products, 0) as count_open
    from expected
    inner join customers_keyed
        on expected.customer_id = customers_keyed.customer_id
    inner join spine
        on expected.event_timestamp = spine.event_timestamp
    left join products_open_to_age
        on expected.customer_id = products_open_to_age.customer_id
        and expected.event_timestamp = products_open_to_age.event_timestamp
    left join products_owned
        on expected.customer_id = products_owned.customer_id
        and expected.event_timestamp = products_owned.event_timestamp
    where spine.is_labelled
        and {{ is_past_burn_in('spine.month_index', 'customers_keyed.joined_month_index') }}
),

without_candidate as (
    select
        open_counted.customer_id,
        open_counted.event_timestamp,
        'open products not counted as the group''s eligible candidates (fct_candidate_retrieval_recall)'
            as problem
    from open_counted
    left join recall
        on open_counted.customer_id = recall.customer_id
        and open_counted.event_timestamp = recall.event_timestamp
    where coalesce(recall.count_candidates_eligible, 0) <> open_counted.count_open
),

{%- endif %}

final as (
    select * from missing
    union all
    select * from extra
    union all
    select * from without_candidate
)

select * from final
