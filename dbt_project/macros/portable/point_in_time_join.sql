{#-
  point_in_time_join(left, right, by, left_time, right_time, direction, columns, left_keys): every row of
  the relation (or CTE) `left` with the columns of ONE row of `right`: the row with the same `by` columns
  whose `right_time` is
    direction='at_or_before': the latest right_time <= left_time;
    direction='after':        the earliest right_time > left_time;
  null columns when there is none. `columns` maps output names to columns of `right`; `left_keys` are
  columns that identify a row of `left` (the Spark version picks one match per left row by them).
  DuckDB runs it as an ASOF join, Spark as a range join keeping the nearest match (row_number).
-#}
{% macro point_in_time_join(left, right, by, left_time, right_time, direction, columns, left_keys) -%}
    {%- if direction not in ('at_or_before', 'after') -%}
        {{ exceptions.raise_compiler_error("point_in_time_join: direction must be at_or_before or after, not " ~ direction) }}
    {%- endif -%}
    {%- set comparison = '>=' if direction == 'at_or_before' else '<' -%}
    {{ return(adapter.dispatch('point_in_time_join', 'nextbest')(
        left, right, by, left_time, right_time, comparison, direction, columns, left_keys
    )) }}
{%- endmacro %}

{% macro _point_in_time_select(left, right, by, left_time, right_time, comparison, columns) -%}
    select
        {{ left }}.*,
        {%- for name, column in columns.items() %}
        {{ right }}.{{ column }} as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ left }}
    {{ caller() }} {{ right }}
        on {% for column in by -%}
        {{ left }}.{{ column }} = {{ right }}.{{ column }} and
        {% endfor -%}
        {{ left }}.{{ left_time }} {{ comparison }} {{ right }}.{{ right_time }}
{%- endmacro %}

{% macro duckdb__point_in_time_join(left, right, by, left_time, right_time, comparison, direction, columns, left_keys) -%}
    {%- call _point_in_time_select(left, right, by, left_time, right_time, comparison, columns) -%}
        asof left join
    {%- endcall %}
{%- endmacro %}

{% macro spark__point_in_time_join(left, right, by, left_time, right_time, comparison, direction, columns, left_keys) -%}
    {%- call _point_in_time_select(left, right, by, left_time, right_time, comparison, columns) -%}
        left join
    {%- endcall %}
    qualify row_number() over (
        partition by {% for key in left_keys %}{{ left }}.{{ key }}{{ ', ' if not loop.last }}{% endfor %}
        order by {{ right }}.{{ right_time }} {{ 'desc' if direction == 'at_or_before' else 'asc' }}
    ) = 1
{%- endmacro %}
