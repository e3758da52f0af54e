{#-
  stable_hash(expr, ...): a 64-bit hash of one or more values (lists included), deterministic across runs
  of the same engine. The engines' hash functions differ, so a hash is a key or a sample inside one build,
  never a value compared across engines.
-#}
{% macro stable_hash() -%}
    {{ return(adapter.dispatch('stable_hash', 'nextbest')(varargs)) }}
{%- endmacro %}

{% macro duckdb__stable_hash(exprs) -%}
    hash({{ exprs | join(', ') }})
{%- endmacro %}

{% macro spark__stable_hash(exprs) -%}
    xxhash64({{ exprs | join(', ') }})
{%- endmacro %}
