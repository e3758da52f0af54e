{#- string_literal(value): value as a SQL string literal, its quotes escaped as the engine reads them. -#}
{% macro string_literal(value) -%}
    {{ return(adapter.dispatch('string_literal', 'nextbest')(value)) }}
{%- endmacro %}

{% macro duckdb__string_literal(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}

{#- Spark reads a backslash as an escape, and two adjacent literals ('a''b') as one string ('ab'). -#}
{% macro spark__string_literal(value) -%}
    '{{ value | string | replace("\\", "\\\\") | replace("'", "\\'") }}'
{%- endmacro %}
