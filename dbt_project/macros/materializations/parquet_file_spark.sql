{#-
  `parquet_file` on Spark: the same contract as the DuckDB materialization (parquet_file.sql), one parquet
  file per mart at `<NEXTBEST_WAREHOUSE_DIR>/marts/<model>.parquet`. Spark writes a directory, so the
  query goes (as one partition, microsecond timestamps: see the spark target in profiles.yml) to
  `marts/_spark/<model>/`, and the model becomes a view over it; nextbest.dbt.publish_spark_marts links the
  directory's one part file to `marts/<model>.parquet` once dbt has finished.
-#}
{% materialization parquet_file, adapter='spark' %}
  {%- set location = spark_mart_location(this) -%}
  {%- set location_literal = spark_mart_literal(location) -%}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set existing_relation = load_cached_relation(this) -%}

  {{ run_hooks(pre_hooks) }}

  {% call statement('write_parquet') -%}
    insert overwrite directory {{ location_literal }} using parquet
    select /*+ REPARTITION(1) */ * from (
        {{ sql }}
    )
  {%- endcall %}

  {{ spark_mart_view(target_relation, existing_relation, location) }}

  {{ run_hooks(post_hooks) }}

  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
