{#- list_distinct(expr): the distinct elements of the list expr (in no particular order). -#}
{% macro list_distinct(expr) -%}
    {{ return(adapter.dispatch('list_distinct', 'nextbest')(expr)) }}
{%- endmacro %}

{% macro duckdb__list_distinct(expr) -%}
    list_distinct({{ expr }})
{%- endmacro %}

{% macro spark__list_distinct(expr) -%}
    array_distinct({{ expr }})
{%- endmacro %}
