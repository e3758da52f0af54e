{#-
  register_raw_sources(): an on-run-start hook making the raw contract's parquet files (in
  $NEXTBEST_RAW_DIR) readable as the `raw` source. dbt-duckdb reads them in place through the sources'
  `external_location` (nothing to do); on Spark each becomes a view `raw.<table>` over its file.
-#}
{% macro register_raw_sources() -%}
    {{ return(adapter.dispatch('register_raw_sources', 'nextbest')()) }}
{%- endmacro %}

{% macro default__register_raw_sources() -%}
    select 1
{%- endmacro %}

{% macro spark__register_raw_sources() -%}
    {%- if execute -%}
        {%- set raw_dir = env_var('NEXTBEST_RAW_DIR') -%}
        {%- do run_query('create schema if not exists raw') -%}
        {%- for source in graph.sources.values() if source.source_name == 'raw' -%}
            {%- do run_query(
                'create or replace view raw.' ~ source.name ~ ' as select * from parquet.`'
                ~ (raw_dir ~ '/' ~ source.name ~ '.parquet') | replace('`', '``') ~ '`'
            ) -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}
