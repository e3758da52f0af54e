{#-
  The owned set a customer's cross-sell features are computed from: of the cross_sell_owned_limit most
  recently started products owned at the snapshot, those the cross-sell features cover at the snapshot
  (int_products_cross_sold: every product of a catalogue within cross_sell_max_products), and the latest
  of them. Customers with the same set and latest product at the same snapshot share owned_set_id, so
  product-to-product features are computed once per distinct set (int_owned_sets_distinct) rather than
  once per customer.
-#}
with

products_owned as (
    select * from {{ ref('int_customer_products_owned') }}
),

covered as (
    select * from {{ ref('int_products_cross_sold') }}
),

owned as (
    select products_owned.*
    from products_owned
    inner join covered
        on products_owned.product_key = covered.product_key
        and products_owned.month_index = covered.month_index
    where products_owned.recency_rank <= {{ var('cross_sell_owned_limit') | int }}
),

sets as (
    select
        customer_key,
        month_index,
        {{ sorted_list_agg('product_key') }} as owned_product_keys,
        min_by(product_key, recency_rank) as latest_product_key,
        min_by(started_month_index, recency_rank) as latest_started_month_index
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
        cast(latest_started_month_index as integer) as latest_started_month_index,
        -- the one definition of a recent start (the sequence features)
        month_index - latest_started_month_index < {{ var('sequence_recency_months') | int }}
            as is_latest_start_recent
    from sets
)

select * from final
