{#-
  One row per customer x snapshot with a recent start (int_customer_recent_starts): the id of the
  combination (snapshot, started products with their bands), so that the sequence features are computed
  once per distinct combination (int_recent_start_sets_cross_sold) rather than once per customer.
-#}
with

recent_starts as (
    select * from {{ ref('int_customer_recent_starts') }}
),

final as (
    select
        customer_key,
        month_index,
        {{ stable_hash('month_index', sorted_list_agg('cast(from_product_key as bigint) * 1000 + start_band')) }}
            as recent_start_set_id
    from recent_starts
    group by customer_key, month_index
)

-- in snapshot order, like every relation the pair model joins on month_index
select * from final
order by month_index
