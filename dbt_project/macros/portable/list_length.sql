{#- list_length(expr): the number of elements of the list expr. -#}
{% macro list_length(expr) -%}
    {{ return(adapter.dispatch('list_length', 'nextbest')(expr)) }}
{%- endmacro %}

{% macro duckdb__list_length(expr) -%}
    len({{ expr }})
{%- endmacro %}

{% macro spark__list_length(expr) -%}
    size({{ expr }})
{%- endmacro %}
