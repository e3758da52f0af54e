{#-
  `parquet_file`: nextbest's own materialization for parquet marts of hundreds of millions of rows (named
  for what it writes, so it does not shadow dbt-duckdb's `external`, which stays available). dbt-duckdb's
  `external` first creates the whole result as a table inside the DuckDB file, counts it,
  writes a row of NULLs if it is empty, then COPYs the table out: at 200k customers that doubled the write
  time of every candidate-grain mart. This one streams the query straight to
  `<external_root>/<model>.parquet` with COPY (an empty result gives an empty file with the right schema)
  and puts a view over the file in its place, so refs and tests read the file. Only parquet is supported.
  The path reaches SQL as a quoted literal (single quotes doubled), never pasted raw.
-#}
{% materialization parquet_file, adapter='duckdb' %}
  {%- set location = render(config.get('location', default=external_location(this, config))) -%}
  {%- set location_literal = "'" ~ (location | replace("'", "''")) ~ "'" -%}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set existing_relation = load_cached_relation(this) -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('write_parquet') -%}
    copy ({{ sql }}) to {{ location_literal }} (format parquet, compression zstd)
  {%- endcall %}

  {{ return(parquet_view_in_place(target_relation, existing_relation, location_literal)) }}
{% endmaterialization %}


{#-
  The end of both parquet materializations (`parquet_file`, `packed_parquet`), once the file is written at
  `location_literal`: a view over it takes the model's place (a table of that name is dropped first),
  then the post-hooks and docs as in dbt's own materializations.
-#}
{% macro parquet_view_in_place(target_relation, existing_relation, location_literal) %}
  {% if existing_relation is not none and existing_relation.type != 'view' %}
    {{ adapter.drop_relation(existing_relation) }}
  {% endif %}

  {% call statement('main') -%}
    create or replace view {{ target_relation }} as (
        select * from read_parquet({{ location_literal }})
    )
  {%- endcall %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do persist_docs(target_relation, model) %}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}
{% endmacro %}
