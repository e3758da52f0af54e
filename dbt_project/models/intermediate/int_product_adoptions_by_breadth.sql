{#-
  Popularity among customers like this one: per product, ownership breadth (products owned, log2 scale)
  and snapshot s, the share of the product's candidates of that breadth at the snapshots s - 3 .. s - 1
  who started it the month after (all known at s), shrunk towards the product's rate over all breadths
  by cross_sell_prior_strength pseudo-candidates. A customer owning many products is left with the rarer
  ones, a new customer with the first ones: the same product is popular at one breadth and not at another.
-#}
{%- set prior = var('cross_sell_prior_strength') | float -%}

with

counted as (
    select * from {{ ref('int_product_adoptions_counted') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

windowed as (
    select
        counted.product_key,
        counted.ownership_breadth,
        spine.month_index,
        sum(counted.count_candidates) as count_candidates,
        sum(counted.count_adopted_next_month) as count_adopted
    from counted
    inner join spine
        on counted.month_index between spine.month_index - 3 and spine.month_index - 1
    group by all
),

overall as (
    select
        product_key,
        month_index,
        sum(count_adopted) / sum(count_candidates) as adoption_rate
    from windowed
    group by all
),

final as (
    select
        windowed.product_key,
        windowed.ownership_breadth,
        windowed.month_index,
        cast(windowed.count_candidates as integer) as count_candidates,
        cast(
            (windowed.count_adopted + {{ prior }} * overall.adoption_rate) / (windowed.count_candidates + {{ prior }})
            as double
        ) as adoption_rate_same_breadth,
        cast(
            (windowed.count_adopted + {{ prior }} * overall.adoption_rate) / (windowed.count_candidates + {{ prior }})
            / nullif(overall.adoption_rate, 0) as double
        ) as adoption_lift_same_breadth
    from windowed
    inner join overall
        on windowed.product_key = overall.product_key
        and windowed.month_index = overall.month_index
)

select * from final
