{#- list_contains(list_expr, value_expr): true when the list holds the value. -#}
{% macro list_contains(list_expr, value_expr) -%}
    {{ return(adapter.dispatch('list_contains', 'nextbest')(list_expr, value_expr)) }}
{%- endmacro %}

{% macro duckdb__list_contains(list_expr, value_expr) -%}
    list_contains({{ list_expr }}, {{ value_expr }})
{%- endmacro %}

{% macro spark__list_contains(list_expr, value_expr) -%}
    array_contains({{ list_expr }}, {{ value_expr }})
{%- endmacro %}
