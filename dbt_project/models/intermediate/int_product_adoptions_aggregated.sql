{#- Adoption of each product by its candidates, per snapshot: how many adopted within 1, 3 and 12 months. -#}
with

candidates as (
    select * from {{ ref('int_candidates_eligible') }}
),

products as (
    select * from {{ ref('int_products_keyed') }}
),

aggregated as (
    select
        product_key,
        month_index,
        count(*) as count_candidates,
        count(*) filter (where next_start_month_index <= month_index + 1) as count_adopted_within_1_months,
        count(*) filter (where next_start_month_index <= month_index + 3) as count_adopted_within_3_months,
        count(*) filter (where next_start_month_index <= month_index + 12) as count_adopted_within_12_months,
    from candidates
    group by all
),

final as (
    select
        products.product_id,
        aggregated.month_index,
        cast(aggregated.count_candidates as integer) as count_candidates,
        cast(aggregated.count_adopted_within_1_months as integer) as count_adopted_within_1_months,
        cast(aggregated.count_adopted_within_3_months as integer) as count_adopted_within_3_months,
        cast(aggregated.count_adopted_within_12_months as integer) as count_adopted_within_12_months,
    from aggregated
    inner join products
        on aggregated.product_key = products.product_key
)

select * from final
