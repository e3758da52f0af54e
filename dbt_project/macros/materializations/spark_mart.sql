{#-
  What the Spark materializations of a mart share (parquet_file_spark.sql, packed_parquet_spark.sql): where
  Spark writes the mart's one partition, that directory as a Spark SQL string literal, and the model's view
  over it (replacing a table left by an earlier materialization).
-#}
{% macro spark_mart_location(relation) -%}
    {{ return(env_var('NEXTBEST_WAREHOUSE_DIR') ~ '/marts/_spark/' ~ relation.identifier) }}
{%- endmacro %}

{#- scratch space of a materialization that writes in steps (packed_parquet_spark.sql), in the build -#}
{% macro spark_scratch_location(relation) -%}
    {{ return(env_var('NEXTBEST_WAREHOUSE_DIR') ~ '/spark-scratch/' ~ relation.identifier) }}
{%- endmacro %}

{% macro spark_mart_literal(location) -%}
    {{ return("'" ~ (location | replace("\\", "\\\\") | replace("'", "\\'")) ~ "'") }}
{%- endmacro %}

{% macro spark_mart_view(target_relation, existing_relation, location) -%}
  {% if existing_relation is not none and existing_relation.type != 'view' %}
    {{ adapter.drop_relation(existing_relation) }}
  {% endif %}

  {% call statement('main') -%}
    create or replace view {{ target_relation }} as
    select * from parquet.`{{ location | replace('`', '``') }}`
  {%- endcall %}
{%- endmacro %}
