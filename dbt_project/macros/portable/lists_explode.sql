{#-
  lists_explode(exprs, names): set-returning select-list items, one row per position of the lists exprs
  (the list expressions, aligned element by element), element i of exprs[k] as column names[k]; a list
  shorter than the longest gives nulls. (list_explode is the one-list case.)
-#}
{% macro lists_explode(exprs, names) -%}
    {%- if exprs | length != names | length -%}
        {{ exceptions.raise_compiler_error("lists_explode: " ~ exprs | length ~ " lists, " ~ names | length ~ " names") }}
    {%- endif -%}
    {{ return(adapter.dispatch('lists_explode', 'nextbest')(exprs, names)) }}
{%- endmacro %}

{% macro duckdb__lists_explode(exprs, names) -%}
    {%- for expr in exprs -%}
        unnest({{ expr }}) as {{ names[loop.index0] }}{{ ',\n        ' if not loop.last }}
    {%- endfor -%}
{%- endmacro %}

{% macro spark__lists_explode(exprs, names) -%}
    inline(arrays_zip({{ exprs | join(', ') }})) as ({{ names | join(', ') }})
{%- endmacro %}
