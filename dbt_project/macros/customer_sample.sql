{#-
  customer_sample(column): a predicate keeping a deterministic 1 / test_sample_modulo share of customers
  (by hash of the key). The grain tests of the candidate-grain models (hundreds of millions of rows at
  1M customers) use it as their `where`; the default modulo 1 keeps every row.
-#}
{% macro customer_sample(column='customer_id') -%}
    ({{ stable_hash(column) }} % {{ var('test_sample_modulo') }} = 0)
{%- endmacro %}


{#-
  in_sampled_customers(customers_relation, column): `column in ('id1', 'id2', ...)` over the customers of
  customers_relation that customer_sample keeps, read when the test runs and written as a literal list.
  DuckDB pushes a literal IN list into a view's own scans, so a test on the pair view joins only the
  sampled customers' candidates; customer_sample's hash predicate is evaluated after the view's joins ran
  on every candidate (unpacks_to at 1M x 24 months: 220 s with the predicate, 72 s with the list).
-#}
{% macro in_sampled_customers(customers_relation, column='customer_id') -%}
    {%- set query -%}
        select customer_id from {{ customers_relation }} where {{ customer_sample('customer_id') }}
    {%- endset -%}
    {%- set ids = run_query(query).columns[0].values() if execute else [] -%}
    {{ column }} in ({{ literal_list(ids) }})
{%- endmacro %}


{#- literal_list(values): 'v1', 'v2', ... as SQL string literals (quotes doubled); null when empty. -#}
{% macro literal_list(values) -%}
    {%- for value in values -%}
        '{{ value | string | replace("'", "''") }}'{{ ", " if not loop.last }}
    {%- else -%}
        null
    {%- endfor -%}
{%- endmacro %}
