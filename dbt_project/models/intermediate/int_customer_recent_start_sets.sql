{#-
  One row per customer x snapshot with a recent start (int_customer_recent_starts): the combination
  (snapshot, started products with their bands) as a sorted list of codes, product_key * H + start_band
  (H = sequence_start_history_months, above every band), and its id, so that the sequence features are
  computed once per distinct combination (int_recent_start_sets_cross_sold) rather than once per customer.
-#}
{%- set history = var('sequence_start_history_months') | int -%}

with

recent_starts as (
    select * from {{ ref('int_customer_recent_starts') }}
),

coded as (
    select
        customer_key,
        month_index,
        {{ sorted_list_agg('cast(from_product_key as bigint) * ' ~ history ~ ' + start_band') }} as start_codes
    from recent_starts
    group by customer_key, month_index
),

final as (
    select
        customer_key,
        month_index,
        {{ stable_hash('month_index', 'start_codes') }} as recent_start_set_id,
        start_codes
    from coded
)

-- in snapshot order, like every relation the pair model joins on month_index
select * from final
order by month_index
