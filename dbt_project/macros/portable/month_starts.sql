{#-
  month_starts(from_date, until_date): a set-returning select-list expression, one row per calendar month
  from the month of from_date to the month of until_date (both included), each the month's first day as a
  date. The snapshot spine (int_snapshots_spined) is generated with it.
-#}
{% macro month_starts(from_date, until_date) -%}
    {{ return(adapter.dispatch('month_starts', 'nextbest')(from_date, until_date)) }}
{%- endmacro %}

{% macro duckdb__month_starts(from_date, until_date) -%}
    cast(unnest(generate_series(
        date_trunc('month', {{ from_date }}),
        date_trunc('month', {{ until_date }}),
        interval 1 month
    )) as date)
{%- endmacro %}

{% macro spark__month_starts(from_date, until_date) -%}
    explode(sequence(trunc({{ from_date }}, 'MM'), trunc({{ until_date }}, 'MM'), interval 1 month))
{%- endmacro %}
