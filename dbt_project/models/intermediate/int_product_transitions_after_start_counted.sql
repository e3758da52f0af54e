{#-
  Adoption counts after a recent start, per snapshot month t, for every (from j, start band b, to c),
  j != c, with c covered by the cross-sell features at t (int_products_cross_sold) and some customer at t
  who started j b months before (int_customer_recent_starts; any of their recent starts, not only the
  latest):
  - count_exposed: such customers whose owned set at t does not hold c;
  - count_adopted_next_month: those of them whose holding of c started in month t + 1.
  Adoptions of month t + 1 are future information at t: int_product_transitions_after_start_windowed only
  uses them at snapshots after t + 1.
-#}
with

recent_starts as (
    select * from {{ ref('int_customer_recent_starts') }}
),

customer_sets as (
    select * from {{ ref('int_customer_owned_sets') }}
),

covered as (
    select * from {{ ref('int_products_cross_sold') }}
),

adoptions as (
    select * from {{ ref('int_customer_adoptions') }}
),

owned as (
    select
        customer_key,
        month_index,
        {{ list_explode('owned_product_keys') }} as product_key
    from customer_sets
),

starters as (
    select
        from_product_key,
        start_band,
        month_index,
        count(*) as count_starters
    from recent_starts
    group by all
),

co_owned as (
    select
        recent_starts.from_product_key,
        recent_starts.start_band,
        owned.product_key as to_product_key,
        recent_starts.month_index,
        count(*) as count_co_owned
    from recent_starts
    inner join owned
        on recent_starts.customer_key = owned.customer_key
        and recent_starts.month_index = owned.month_index
        and recent_starts.from_product_key != owned.product_key
    group by all
),

adopted as (
    select
        recent_starts.from_product_key,
        recent_starts.start_band,
        adoptions.product_key as to_product_key,
        recent_starts.month_index,
        count(*) as count_adopted_next_month
    from recent_starts
    inner join adoptions
        on recent_starts.customer_key = adoptions.customer_key
        and adoptions.adopted_month_index = recent_starts.month_index + 1
        and recent_starts.from_product_key != adoptions.product_key
    group by all
),

pairs as (
    select
        starters.from_product_key,
        starters.start_band,
        covered.product_key as to_product_key,
        starters.month_index,
        starters.count_starters
    from starters
    inner join covered
        on starters.month_index = covered.month_index
        and starters.from_product_key != covered.product_key
),

final as (
    select
        pairs.from_product_key,
        pairs.start_band,
        pairs.to_product_key,
        pairs.month_index,
        cast(pairs.count_starters - coalesce(co_owned.count_co_owned, 0) as integer) as count_exposed,
        cast(coalesce(adopted.count_adopted_next_month, 0) as integer) as count_adopted_next_month
    from pairs
    left join co_owned
        on pairs.from_product_key = co_owned.from_product_key
        and pairs.start_band = co_owned.start_band
        and pairs.to_product_key = co_owned.to_product_key
        and pairs.month_index = co_owned.month_index
    left join adopted
        on pairs.from_product_key = adopted.from_product_key
        and pairs.start_band = adopted.start_band
        and pairs.to_product_key = adopted.to_product_key
        and pairs.month_index = adopted.month_index
)

select * from final
