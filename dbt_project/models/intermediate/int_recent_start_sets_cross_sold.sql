{#-
  Sequence features of every distinct combination of recent starts (int_customer_recent_start_sets) for
  every product c: over the set's started products j, each at its start band b, the
  start_transition_lift of c at the set's snapshot (int_product_transitions_after_start_windowed). A
  candidate gets the row of its customer's set; a customer without a recent start gets the neutral values
  (lift 1, log-lift sum 0) in feat_customer_product_monthly.
-#}
{%- set history = var('sequence_start_history_months') | int -%}

with

customer_sets as (
    select * from {{ ref('int_customer_recent_start_sets') }}
),

transitions as (
    select * from {{ ref('int_product_transitions_after_start_windowed') }}
),

-- each distinct set once (far fewer than customers), then one row per start, decoded from its code
sets as (
    select
        recent_start_set_id,
        any_value(month_index) as month_index,
        any_value(start_codes) as start_codes
    from customer_sets
    group by recent_start_set_id
),

set_codes as (
    select
        recent_start_set_id,
        month_index,
        {{ list_explode('start_codes') }} as start_code
    from sets
),

set_members as (
    select
        recent_start_set_id,
        month_index,
        cast(floor(start_code / {{ history }}) as integer) as from_product_key,
        cast(start_code - {{ history }} * floor(start_code / {{ history }}) as integer) as start_band
    from set_codes
),

final as (
    select
        set_members.recent_start_set_id,
        set_members.month_index,
        transitions.to_product_key,
        cast(max(transitions.start_transition_lift) as double) as max_start_transition_lift,
        {{ exact_sum('ln(transitions.start_transition_lift)') }} as sum_log_start_transition_lift
    from set_members
    inner join transitions
        on set_members.from_product_key = transitions.from_product_key
        and set_members.start_band = transitions.start_band
        and set_members.month_index = transitions.month_index
    group by all
)

-- stored in snapshot order (see int_owned_sets_cross_sold)
select * from final
order by month_index
