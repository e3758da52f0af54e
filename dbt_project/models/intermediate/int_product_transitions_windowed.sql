{#-
  How adopting one product relates to owning another, per snapshot s, estimated from history strictly
  before s: counts of int_product_transitions_counted at the months t with s - cross_sell_history_months
  <= t <= s - 1, so that every adoption counted (in month t + 1 <= s) is known at s.
  - base_adoption_rate: share of population customers not owning c who started it the next month;
  - transition_rate: (adopted + k * base rate) / (exposed + k) among owners of j not owning c, k =
    cross_sell_prior_strength pseudo-customers adopting at the base rate;
  - transition_lift = transition_rate / base_adoption_rate (1 when c has no adoption in the window);
  - recent_start_transition_lift: the same among customers whose latest started product is j, started in
    the last sequence_recency_months months (int_product_transitions_counted), its rate shrunk by k
    pseudo-customers towards transition_rate rather than the base rate: without recent starters it is
    transition_lift;
  - coownership_lift at s itself (ownership at s is known at s): (co-owners + k) / (expected co-owners under
    independence + k), expected = owners(j) * owners(c) / customers with an owned set.
-#}
{%- set history = var('cross_sell_history_months') | int -%}
{%- set prior = var('cross_sell_prior_strength') | float -%}

with

counted as (
    select * from {{ ref('int_product_transitions_counted') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

sets as (
    select * from {{ ref('int_owned_sets_distinct') }}
),

pair_windowed as (
    {{ counts_before_snapshot(
        'counted',
        ['from_product_key', 'to_product_key'],
        {
            'count_exposed': 'count_exposed_windowed',
            'count_adopted_next_month': 'count_adopted_windowed',
            'count_recent_start_exposed': 'count_recent_start_exposed_windowed',
            'count_adopted_next_month_after_recent_start': 'count_adopted_after_recent_start_windowed',
        },
        'spine',
        history,
        carried=['count_co_owned', 'count_from_owners'],
    ) }}
),

base_counted as (
    select distinct
        to_product_key,
        month_index,
        count_base_exposed,
        count_base_adopted_next_month
    from counted
),

base_windowed as (
    select
        to_product_key,
        month_index,
        count_base_adopted_windowed / nullif(count_base_exposed_windowed, 0) as base_adoption_rate
    from (
        {{ counts_before_snapshot(
            'base_counted',
            ['to_product_key'],
            {
                'count_base_exposed': 'count_base_exposed_windowed',
                'count_base_adopted_next_month': 'count_base_adopted_windowed',
            },
            'spine',
            history,
        ) }}
    ) as base_counts_windowed
),

owner_counts as (
    select
        from_product_key as product_key,
        month_index,
        any_value(count_from_owners) as count_owners
    from counted
    group by all
),

set_customers as (
    select
        month_index,
        sum(count_customers) as count_customers
    from sets
    group by all
),

rated as (
    select
        pair_windowed.*,
        base_windowed.base_adoption_rate,
        (coalesce(pair_windowed.count_adopted_windowed, 0) + {{ prior }} * base_windowed.base_adoption_rate)
            / (coalesce(pair_windowed.count_exposed_windowed, 0) + {{ prior }}) as transition_rate
    from pair_windowed
    left join base_windowed
        on pair_windowed.to_product_key = base_windowed.to_product_key
        and pair_windowed.month_index = base_windowed.month_index
),

final as (
    select
        rated.from_product_key,
        rated.to_product_key,
        rated.month_index,
        cast(coalesce(rated.count_exposed_windowed, 0) as integer) as count_exposed_windowed,
        cast(coalesce(rated.count_adopted_windowed, 0) as integer) as count_adopted_windowed,
        cast(rated.base_adoption_rate as double) as base_adoption_rate,
        cast(
            case
                when coalesce(rated.base_adoption_rate, 0) = 0 then 1.0
                else rated.transition_rate / rated.base_adoption_rate
            end as double
        ) as transition_lift,
        cast(
            case
                when coalesce(rated.base_adoption_rate, 0) = 0 then 1.0
                else (
                    (coalesce(rated.count_adopted_after_recent_start_windowed, 0)
                        + {{ prior }} * rated.transition_rate)
                    / (coalesce(rated.count_recent_start_exposed_windowed, 0) + {{ prior }})
                ) / rated.base_adoption_rate
            end as double
        ) as recent_start_transition_lift,
        cast(
            (coalesce(rated.count_co_owned, 0) + {{ prior }})
            / (
                coalesce(
                    cast(from_owners.count_owners as double) * to_owners.count_owners
                    / nullif(set_customers.count_customers, 0),
                    0
                )
                + {{ prior }}
            ) as double
        ) as coownership_lift
    from rated
    left join owner_counts as from_owners
        on rated.from_product_key = from_owners.product_key
        and rated.month_index = from_owners.month_index
    left join owner_counts as to_owners
        on rated.to_product_key = to_owners.product_key
        and rated.month_index = to_owners.month_index
    left join set_customers
        on rated.month_index = set_customers.month_index
)

select * from final
