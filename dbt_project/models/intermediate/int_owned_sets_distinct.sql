{#- One row per distinct owned set (int_customer_owned_sets) with the number of customers holding it. -#}
with

customer_sets as (
    select * from {{ ref('int_customer_owned_sets') }}
),

final as (
    select
        owned_set_id,
        any_value(month_index) as month_index,
        any_value(owned_product_keys) as owned_product_keys,
        any_value(latest_product_key) as latest_product_key,
        count(distinct month_index) as count_months,
        count(distinct owned_product_keys) as count_product_lists,
        count(distinct latest_product_key) as count_latest_products,
        cast(count(*) as integer) as count_customers
    from customer_sets
    group by owned_set_id
)

select * from final
