{#-
  Cross-sell features of every distinct owned set (int_owned_sets_distinct) for every product c it does
  not hold: how c relates to the products in the set (int_product_transitions_windowed at the set's
  snapshot, month_index: a set belongs to one snapshot, and the pair model joins on it too so that a
  filter on the snapshot reaches this table's scan). A candidate gets the row of its customer's set; a
  customer owning nothing has no set and gets the neutral values (lift 1, log-lift sum 0) in
  feat_customer_product_monthly.
-#}
with

sets as (
    select * from {{ ref('int_owned_sets_distinct') }}
),

transitions as (
    select * from {{ ref('int_product_transitions_windowed') }}
),

set_members as (
    select
        owned_set_id,
        month_index,
        latest_product_key,
        owned_product_keys,
        {{ list_explode('owned_product_keys') }} as from_product_key
    from sets
),

final as (
    select
        set_members.owned_set_id,
        set_members.month_index,
        transitions.to_product_key,
        cast(max(transitions.transition_lift) as double) as max_transition_lift,
        {{ exact_sum('ln(transitions.transition_lift)') }} as sum_log_transition_lift,
        cast(max(transitions.transition_lift) filter (
            where set_members.from_product_key = set_members.latest_product_key
        ) as double) as latest_transition_lift,
        cast(max(transitions.recent_start_transition_lift) filter (
            where set_members.from_product_key = set_members.latest_product_key
        ) as double) as latest_recent_start_transition_lift,
        cast(max(transitions.coownership_lift) as double) as max_coownership_lift,
        {{ exact_sum('ln(transitions.coownership_lift)') }} / count(transitions.coownership_lift)
            as mean_log_coownership_lift
    from set_members
    inner join transitions
        on set_members.from_product_key = transitions.from_product_key
        and set_members.month_index = transitions.month_index
    where not {{ list_contains('set_members.owned_product_keys', 'transitions.to_product_key') }}
    group by all
)

-- stored in snapshot order: the packer reads one snapshot at a time through the pair model, which joins
-- this table on month_index; grouped by month, that read skips the other months' row groups (at 1M
-- customers x 24 months, 25M rows: every row group was scanned once per month otherwise)
select * from final
order by month_index
