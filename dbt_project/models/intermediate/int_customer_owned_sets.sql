{#-
  The owned set a customer's cross-sell features are computed from: the cross_sell_owned_limit most
  recently started products owned at the snapshot, and the latest of them. Customers with the same set and
  latest product at the same snapshot share owned_set_id, so product-to-product features are computed once
  per distinct set (int_owned_sets_distinct) rather than once per customer.
-#}
with

owned as (
    select * from {{ ref('int_customer_products_owned') }}
    where recency_rank <= {{ var('cross_sell_owned_limit') | int }}
),

sets as (
    select
        customer_key,
        month_index,
        {{ sorted_list_agg('product_key') }} as owned_product_keys,
        max(product_key) filter (where recency_rank = 1) as latest_product_key,
        max(started_month_index) filter (where recency_rank = 1) as latest_started_month_index
    from owned
    group by customer_key, month_index
),

final as (
    select
        customer_key,
        month_index,
        {{ stable_hash('month_index', 'latest_product_key', 'owned_product_keys') }} as owned_set_id,
        owned_product_keys,
        cast(latest_product_key as integer) as latest_product_key,
        cast(latest_started_month_index as integer) as latest_started_month_index
    from sets
)

select * from final
