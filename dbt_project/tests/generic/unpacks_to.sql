{#-
  Fails with every row that differs between `pair_model` and `model` unpacked (list element i of every
  feature list belongs to candidate_product_ids[i]), in either direction, on customer_sample(customer_id).
  It proves the packed (online) layout carries exactly the pair model's rows and values, and that every
  list is as long as candidate_product_ids.
-#}
{% test unpacks_to(model, pair_model) %}
{%- set columns = packed_feature_columns(pair_model) -%}
with

packed as (
    select * from {{ model }} where {{ customer_sample('customer_id') }}
),

misaligned as (
    select customer_id, event_timestamp, 'list lengths differ' as problem
    from packed
    where false
    {%- for column in columns %}
        or len({{ column.name }}) != len(candidate_product_ids)
    {%- endfor %}
),

unpacked as (
    select
        customer_id,
        event_timestamp,
        unnest(candidate_product_ids) as product_id,
        {%- for column in columns %}
        unnest({{ column.name }}) as {{ column.name }},
        {%- endfor %}
    from packed
),

pairs as (
    select
        customer_id,
        event_timestamp,
        product_id,
        {%- for column in columns %}
        {{ packed_element(column) }} as {{ column.name }},
        {%- endfor %}
    from {{ ref(pair_model) }}
    where {{ customer_sample('customer_id') }}
),

only_packed as (
    select *, 'only in the packed model' as problem from (select * from unpacked except all select * from pairs)
),

only_pairs as (
    select *, 'only in the pair model' as problem from (select * from pairs except all select * from unpacked)
),

final as (
    select customer_id, event_timestamp, problem from misaligned
    union all
    select customer_id, event_timestamp, problem from only_packed
    union all
    select customer_id, event_timestamp, problem from only_pairs
)

select * from final
{% endtest %}
