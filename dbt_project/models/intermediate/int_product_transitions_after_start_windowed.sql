{#-
  How a recent start of one product relates to adopting another, per snapshot s, from the
  int_product_transitions_after_start_counted months t in [s - cross_sell_history_months, s - 1] only
  (their adoptions, in month t + 1 <= s, are known at s):
  start_transition_lift = the rate of adopting c the month after a start of j b months before (band b),
  shrunk by k = cross_sell_prior_strength pseudo-customers towards the rate after owning j at all
  (int_product_transitions_windowed's transition_lift x base rate), over c's base rate. Without such
  starters in the window it is transition_lift; 1 when c has no adoption in the window.
-#}
{%- set history = var('cross_sell_history_months') | int -%}
{%- set prior = var('cross_sell_prior_strength') | float -%}

with

counted as (
    select * from {{ ref('int_product_transitions_after_start_counted') }}
),

transitions as (
    select * from {{ ref('int_product_transitions_windowed') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

pair_windowed as (
    {{ counts_before_snapshot(
        'counted',
        ['from_product_key', 'start_band', 'to_product_key'],
        {
            'count_exposed': 'count_exposed_windowed',
            'count_adopted_next_month': 'count_adopted_windowed',
        },
        'spine',
        history,
    ) }}
),

final as (
    select
        pair_windowed.from_product_key,
        pair_windowed.start_band,
        pair_windowed.to_product_key,
        pair_windowed.month_index,
        cast(coalesce(pair_windowed.count_exposed_windowed, 0) as integer) as count_exposed_windowed,
        cast(coalesce(pair_windowed.count_adopted_windowed, 0) as integer) as count_adopted_windowed,
        cast(
            case
                when coalesce(transitions.base_adoption_rate, 0) = 0 then 1.0
                else (
                    (coalesce(pair_windowed.count_adopted_windowed, 0)
                        + {{ prior }} * transitions.transition_lift * transitions.base_adoption_rate)
                    / (coalesce(pair_windowed.count_exposed_windowed, 0) + {{ prior }})
                ) / transitions.base_adoption_rate
            end as double
        ) as start_transition_lift
    from pair_windowed
    inner join transitions
        on pair_windowed.from_product_key = transitions.from_product_key
        and pair_windowed.to_product_key = transitions.to_product_key
        and pair_windowed.month_index = transitions.month_index
)

select * from final
