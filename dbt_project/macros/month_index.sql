{#-
  month_index(expr): the calendar month of a date / timestamp as a running integer
  (year * 12 + month - 1; a bigint on every engine, as DuckDB's year() is), so that "n months earlier"
  is plain integer arithmetic.
  A month-end snapshot s of month m covers every date d with month_index(d) <= m, and
  "(s - n months, s]" is the months m - n + 1 .. m.
-#}
{% macro month_index(expr) -%}
    cast(year({{ expr }}) * 12 + month({{ expr }}) - 1 as bigint)
{%- endmacro %}
