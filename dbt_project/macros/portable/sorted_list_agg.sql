{#-
  sorted_list_agg(expr): an aggregate, the group's values of expr as a list sorted ascending (nulls last).
-#}
{% macro sorted_list_agg(expr) -%}
    {{ return(adapter.dispatch('sorted_list_agg', 'nextbest')(expr)) }}
{%- endmacro %}

{% macro duckdb__sorted_list_agg(expr) -%}
    list_sort(list({{ expr }}))
{%- endmacro %}

{% macro spark__sorted_list_agg(expr) -%}
    array_sort(collect_list({{ expr }}))
{%- endmacro %}
