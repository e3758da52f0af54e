{#- Adoption of each product by its candidates, per snapshot: int_product_adoptions_counted over all breadths. -#}
with

counted as (
    select * from {{ ref('int_product_adoptions_counted') }}
),

products as (
    select * from {{ ref('int_products_keyed') }}
),

aggregated as (
    select
        product_key,
        month_index,
        sum(count_candidates) as count_candidates,
        sum(count_adopted_next_month) as count_adopted_within_1_months,
        sum(count_adopted_within_3_months) as count_adopted_within_3_months,
        sum(count_adopted_within_12_months) as count_adopted_within_12_months
    from counted
    group by all
),

final as (
    select
        products.product_id,
        aggregated.month_index,
        cast(aggregated.count_candidates as integer) as count_candidates,
        cast(aggregated.count_adopted_within_1_months as integer) as count_adopted_within_1_months,
        cast(aggregated.count_adopted_within_3_months as integer) as count_adopted_within_3_months,
        cast(aggregated.count_adopted_within_12_months as integer) as count_adopted_within_12_months
    from aggregated
    inner join products
        on aggregated.product_key = products.product_key
)

select * from final
