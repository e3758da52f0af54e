{#-
  The candidate retrieval stage's ranking of the catalogue (int_candidates_retrieved), per snapshot s:
  each product's adoption rate over the last window_months months known at s, among its candidates
  (int_product_adoptions_counted at the snapshots t = s - window_months .. s - 1, whose next month
  t + 1 <= s has happened), shrunk towards the catalogue's rate over the same months by prior_candidates
  pseudo-candidates adopting at that rate: a product without candidates in the window (new, or not yet
  in the data) gets the catalogue's rate, one seen by few candidates little more than it. Ranked 1 = the
  highest rate, ties by product_key. A popularity retrieval: at Complete Journey's 2,378 product types it
  held as many next-month adoptions in its top 200 as item-item co-occurrence and more than the
  two-tower model (README, Retrieval).
-#}
{%- set window_months = 3 -%}
{%- set prior_candidates = 100 -%}

with

products as (
    select * from {{ ref('int_products_keyed') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

counted as (
    select * from {{ ref('int_product_adoptions_counted') }}
),

-- per product and snapshot t: its candidates and how many started it in month t + 1
monthly as (
    select
        product_key,
        month_index,
        sum(count_candidates) as count_candidates,
        sum(count_adopted_next_month) as count_adopted_next_month
    from counted
    group by all
),

windowed as (
    select
        products.product_key,
        spine.month_index,
        coalesce(sum(monthly.count_candidates), 0) as count_candidates_last_{{ window_months }}_months,
        coalesce(sum(monthly.count_adopted_next_month), 0) as count_adopted_last_{{ window_months }}_months
    from products
    cross join spine
    left join monthly
        on products.product_key = monthly.product_key
        and monthly.month_index >= spine.month_index - {{ window_months }}
        and monthly.month_index <= spine.month_index - 1
    group by all
),

catalogue as (
    select
        month_index,
        coalesce(
            sum(count_adopted_last_{{ window_months }}_months)
            / nullif(sum(count_candidates_last_{{ window_months }}_months), 0),
            0
        ) as catalogue_adoption_rate
    from windowed
    group by all
),

scored as (
    select
        windowed.product_key,
        windowed.month_index,
        windowed.count_candidates_last_{{ window_months }}_months,
        windowed.count_adopted_last_{{ window_months }}_months,
        (windowed.count_adopted_last_{{ window_months }}_months
            + {{ prior_candidates }} * catalogue.catalogue_adoption_rate)
        / (windowed.count_candidates_last_{{ window_months }}_months + {{ prior_candidates }})
            as adoption_rate_last_{{ window_months }}_months_smoothed
    from windowed
    inner join catalogue
        on windowed.month_index = catalogue.month_index
),

final as (
    select
        product_key,
        cast(month_index as integer) as month_index,
        cast(count_candidates_last_{{ window_months }}_months as integer) as count_candidates_last_{{ window_months }}_months,
        cast(count_adopted_last_{{ window_months }}_months as integer) as count_adopted_last_{{ window_months }}_months,
        cast(adoption_rate_last_{{ window_months }}_months_smoothed as double)
            as adoption_rate_last_{{ window_months }}_months_smoothed,
        cast(
            row_number() over (
                partition by month_index
                order by adoption_rate_last_{{ window_months }}_months_smoothed desc, product_key
            ) as integer
        ) as retrieval_rank
    from scored
)

select * from final
