{#-
  The one definition of "a candidate adopted the product": per product, ownership breadth and snapshot
  month m, the candidates (eligible, not owning it at m) and how many of them started a holding of it in
  the month after m, or within 3 or 12 months. Future information relative to m: the models built on it
  (int_product_adoptions_aggregated, int_product_adoptions_by_breadth) only use it shifted past the window.
-#}
with

candidates as (
    select * from {{ ref('int_candidates_eligible') }}
),

final as (
    select
        product_key,
        ownership_breadth,
        month_index,
        cast(count(*) as integer) as count_candidates,
        cast(count(*) filter (where next_start_month_index <= month_index + 1) as integer)
            as count_adopted_next_month,
        cast(count(*) filter (where next_start_month_index <= month_index + 3) as integer)
            as count_adopted_within_3_months,
        cast(count(*) filter (where next_start_month_index <= month_index + 12) as integer)
            as count_adopted_within_12_months
    from candidates
    group by all
)

select * from final
