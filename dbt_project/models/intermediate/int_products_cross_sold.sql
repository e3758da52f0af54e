{#-
  The products the cross-sell features cover at each snapshot: the cross_sell_max_products products with
  the most population owners at the snapshot (ties: product key). Product-to-product counts are dense in
  the products covered (int_product_transitions_counted: covered x covered pairs per month) and every owned
  set is read against every covered product (int_owned_sets_cross_sold), so a catalogue of thousands of
  products (a retailer's product types) would make them quadratic; a bank's or a category-grain
  catalogue (up to the limit) is covered whole. Ownership at the snapshot is known at the snapshot, so the
  choice is point in time. A product not covered gets the neutral cross-sell values, as a candidate of a
  customer owning nothing does.
-#}
with

ownership as (
    select * from {{ ref('int_product_ownership_counted') }}
),

products as (
    select * from {{ ref('int_products_keyed') }}
),

owners as (
    select
        products.product_key,
        ownership.month_index,
        sum(ownership.count_owners) as count_owners
    from ownership
    inner join products
        on ownership.product_id = products.product_id
    group by all
),

final as (
    select
        product_key,
        month_index,
        cast(count_owners as integer) as count_owners
    from owners
    qualify row_number() over (partition by month_index order by count_owners desc, product_key)
        <= {{ var('cross_sell_max_products') | int }}
)

select * from final
