{#-
  Product-to-product adoption counts per snapshot month t, for every pair (from j, to c), j != c, of
  products the cross-sell features cover at t (int_products_cross_sold), where j is in some customer's
  owned set (int_customer_owned_sets) at t:
  - count_exposed: customers whose owned set at t holds j and not c;
  - count_adopted_next_month: those of them whose holding of c started in month t + 1;
  - count_co_owned: customers whose owned set at t holds both j and c;
  - count_recent_start_exposed, count_adopted_next_month_after_recent_start: the same as count_exposed and
    count_adopted_next_month among the customers whose latest started product at t is j, started in the
    last sequence_recency_months months (t - start < N).
  And, per to-product c and month t, the base rate's parts over the whole population: population customers
  not owning c at t, and those of them starting c in month t + 1. Adoptions of month t + 1 are future
  information at t: int_product_transitions_windowed only uses them at snapshots after t + 1.
-#}
with

sets as (
    select * from {{ ref('int_owned_sets_distinct') }}
),

customer_sets as (
    select * from {{ ref('int_customer_owned_sets') }}
),

covered as (
    select * from {{ ref('int_products_cross_sold') }}
),

population as (
    select * from {{ ref('int_customers_in_population') }}
),

adoptions as (
    select * from {{ ref('int_customer_adoptions') }}
),

products as (
    select * from {{ ref('int_products_keyed') }}
),

ownership as (
    select * from {{ ref('int_product_ownership_counted') }}
),

-- customers whose latest started product started in the last sequence_recency_months months
recent_starts as (
    select
        customer_key,
        month_index,
        owned_set_id,
        latest_product_key as from_product_key
    from customer_sets
    where is_latest_start_recent
),

-- each customer's owned set, one row per product in it
owned as (
    select
        customer_key,
        month_index,
        {{ list_explode('owned_product_keys') }} as product_key
    from customer_sets
),

set_members as (
    select
        owned_set_id,
        month_index,
        latest_product_key,
        count_customers,
        {{ list_explode('owned_product_keys') }} as product_key
    from sets
),

owners as (
    select
        product_key as from_product_key,
        month_index,
        sum(count_customers) as count_owners
    from set_members
    group by all
),

co_owned as (
    select
        from_members.product_key as from_product_key,
        to_members.product_key as to_product_key,
        from_members.month_index,
        sum(from_members.count_customers) as count_co_owned
    from set_members as from_members
    inner join set_members as to_members
        on from_members.owned_set_id = to_members.owned_set_id
        and from_members.product_key != to_members.product_key
    group by all
),

adopted_after_owning as (
    select
        owned.product_key as from_product_key,
        adoptions.product_key as to_product_key,
        owned.month_index,
        count(*) as count_adopted_next_month
    from adoptions
    inner join owned
        on adoptions.customer_key = owned.customer_key
        and adoptions.adopted_month_index = owned.month_index + 1
        and adoptions.product_key != owned.product_key
    group by all
),

-- recent starters co-owning each other product: counted per owned set (which holds the latest product),
-- then per member of the set
recent_sets as (
    select
        owned_set_id,
        count(*) as count_recent_starters
    from recent_starts
    group by all
),

recent_starters as (
    select
        from_product_key,
        month_index,
        count(*) as count_recent_starters
    from recent_starts
    group by all
),

recent_co_owned as (
    select
        set_members.latest_product_key as from_product_key,
        set_members.product_key as to_product_key,
        set_members.month_index,
        sum(recent_sets.count_recent_starters) as count_recent_co_owned
    from set_members
    inner join recent_sets
        on set_members.owned_set_id = recent_sets.owned_set_id
    where set_members.product_key != set_members.latest_product_key
    group by all
),

adopted_after_recent_start as (
    select
        recent_starts.from_product_key,
        adoptions.product_key as to_product_key,
        recent_starts.month_index,
        count(*) as count_adopted_next_month
    from adoptions
    inner join recent_starts
        on adoptions.customer_key = recent_starts.customer_key
        and adoptions.adopted_month_index = recent_starts.month_index + 1
        and adoptions.product_key != recent_starts.from_product_key
    group by all
),

base_adopted as (
    select
        adoptions.product_key as to_product_key,
        population.month_index,
        count(*) as count_base_adopted_next_month
    from adoptions
    inner join population
        on adoptions.customer_key = population.customer_key
        and adoptions.adopted_month_index = population.month_index + 1
    group by all
),

base_exposed as (
    select
        products.product_key as to_product_key,
        ownership.month_index,
        sum(ownership.count_population) - sum(ownership.count_owners) as count_base_exposed
    from ownership
    inner join products
        on ownership.product_id = products.product_id
    group by all
),

pairs as (
    select
        owners.from_product_key,
        covered.product_key as to_product_key,
        owners.month_index,
        owners.count_owners
    from owners
    inner join covered
        on owners.month_index = covered.month_index
        and owners.from_product_key != covered.product_key
),

final as (
    select
        pairs.from_product_key,
        pairs.to_product_key,
        pairs.month_index,
        cast(pairs.count_owners - coalesce(co_owned.count_co_owned, 0) as integer) as count_exposed,
        cast(coalesce(adopted_after_owning.count_adopted_next_month, 0) as integer) as count_adopted_next_month,
        cast(coalesce(co_owned.count_co_owned, 0) as integer) as count_co_owned,
        cast(pairs.count_owners as integer) as count_from_owners,
        cast(coalesce(base_exposed.count_base_exposed, 0) as integer) as count_base_exposed,
        cast(coalesce(base_adopted.count_base_adopted_next_month, 0) as integer)
            as count_base_adopted_next_month,
        cast(
            coalesce(recent_starters.count_recent_starters, 0) - coalesce(recent_co_owned.count_recent_co_owned, 0)
            as integer
        ) as count_recent_start_exposed,
        cast(coalesce(adopted_after_recent_start.count_adopted_next_month, 0) as integer)
            as count_adopted_next_month_after_recent_start
    from pairs
    left join co_owned
        on pairs.from_product_key = co_owned.from_product_key
        and pairs.to_product_key = co_owned.to_product_key
        and pairs.month_index = co_owned.month_index
    left join adopted_after_owning
        on pairs.from_product_key = adopted_after_owning.from_product_key
        and pairs.to_product_key = adopted_after_owning.to_product_key
        and pairs.month_index = adopted_after_owning.month_index
    left join base_exposed
        on pairs.to_product_key = base_exposed.to_product_key
        and pairs.month_index = base_exposed.month_index
    left join base_adopted
        on pairs.to_product_key = base_adopted.to_product_key
        and pairs.month_index = base_adopted.month_index
    left join recent_starters
        on pairs.from_product_key = recent_starters.from_product_key
        and pairs.month_index = recent_starters.month_index
    left join recent_co_owned
        on pairs.from_product_key = recent_co_owned.from_product_key
        and pairs.to_product_key = recent_co_owned.to_product_key
        and pairs.month_index = recent_co_owned.month_index
    left join adopted_after_recent_start
        on pairs.from_product_key = adopted_after_recent_start.from_product_key
        and pairs.to_product_key = adopted_after_recent_start.to_product_key
        and pairs.month_index = adopted_after_recent_start.month_index
)

select * from final
