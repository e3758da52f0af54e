{#-
  list_explode(expr): a set-returning select-list expression, one row per element of the list expr (a row
  with an empty or null list gives none).
-#}
{% macro list_explode(expr) -%}
    {{ return(adapter.dispatch('list_explode', 'nextbest')(expr)) }}
{%- endmacro %}

{% macro duckdb__list_explode(expr) -%}
    unnest({{ expr }})
{%- endmacro %}

{% macro spark__list_explode(expr) -%}
    explode({{ expr }})
{%- endmacro %}
