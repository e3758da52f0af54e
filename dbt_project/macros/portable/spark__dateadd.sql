{#-
  dbt's cross-database dateadd on Spark, overriding dbt-spark's: that one goes through unix seconds and
  to_timestamp(bigint), which fails with the TIMESTAMP_NTZ timestamps of the spark target (profiles.yml).
  timestampadd returns a timestamp, as DuckDB's `date + interval` does, and clips to the month's end alike
  (2024-01-31 + 1 month = 2024-02-29).
-#}
{% macro spark__dateadd(datepart, interval, from_date_or_timestamp) -%}
    timestampadd({{ datepart | upper }}, {{ interval }}, {{ from_date_or_timestamp }})
{%- endmacro %}
