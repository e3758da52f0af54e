{#-
  customer_sample(column): a predicate keeping a deterministic 1 / test_sample_modulo share of customers
  (by hash of the key). The grain tests of the candidate-grain models (hundreds of millions of rows at
  1M customers) use it as their `where`; the default modulo 1 keeps every row.
-#}
{% macro customer_sample(column='customer_id') -%}
    ({{ stable_hash(column) }} % {{ var('test_sample_modulo') }} = 0)
{%- endmacro %}
