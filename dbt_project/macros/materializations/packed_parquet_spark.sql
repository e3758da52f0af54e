{#-
  `packed_parquet` on Spark: the file the DuckDB materialization writes (packed_parquet.sql), built in
  Spark SQL. The model's SQL gives one row per element (customer_id, event_timestamp, the snapshot's
  month_index and integer keys (pair_join_columns: left out), product_id, one encoded value per feature;
  product_id null for a customer x snapshot without candidates). Each customer x snapshot collects its
  elements as structs, product first, so that array_sort orders them by product (a row without candidates
  collects nothing: empty lists); each list column is one field of the sorted structs. The columns are
  those of nextbest.features.packing's packed_schema: the keys, candidate_product_ids (its
  PACKED_PRODUCTS), then one list per feature in the model's order, without month_index and the integer
  keys; list elements nullable, as in the schema pyarrow writes there.
  One snapshot at a time, as the DuckDB materialization packs a few months at a time: each month's rows
  (a filter on the elements' month_index, which every relation of the pair model is joined on, so Spark
  pushes it into each scan) are grouped and written to
  `spark-scratch/<model>/<dbt invocation id>/month_index=<m>/` in the build. Grouping every month at
  once shuffled and spilled the whole pair model in one query: at 1M customers x 24 months (250M
  elements) that passed 59 GB of local disk in 31 minutes without finishing.
  Then one task concatenates the months' files without a shuffle (COALESCE(1)) into the mart, written
  as a mart is (parquet_file_spark.sql): one partition under `marts/_spark/<model>/`, which
  nextbest.dbt.publish_spark_marts links to `marts/<model>.parquet`; the model becomes a view over it.
  The model's scratch directory is then emptied (of an interrupted run's months too).
-#}
{% materialization packed_parquet, adapter='spark' %}
  {%- set location = spark_mart_location(this) -%}
  {%- set location_literal = spark_mart_literal(location) -%}
  {%- set scratch = spark_scratch_location(this) -%}
  {#- this run's months, apart from any an interrupted run left -#}
  {%- set run_scratch = scratch ~ '/' ~ invocation_id -%}
  {%- set population = ref(config.require('population')) -%}
  {%- set months = [] -%}
  {%- if execute -%}
    {%- set result = run_query('select distinct month_index from ' ~ population ~ ' order by month_index') -%}
    {%- for month in result.columns[0].values() -%}
      {%- do months.append(month | int) -%}
    {%- endfor -%}
  {%- endif -%}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set keys = ['customer_id', 'event_timestamp'] -%}
  {%- set product = 'product_id' -%}
  {%- set features = [] -%}
  {%- for column in get_columns_in_query(sql) -%}
    {%- if column | lower not in keys + [product] + pair_join_columns() -%}
      {%- do features.append(column) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- set lists = [(product, 'candidate_product_ids')] -%}
  {%- for feature in features -%}
    {%- do lists.append((feature, feature)) -%}
  {%- endfor -%}

  {{ run_hooks(pre_hooks) }}

  {% for month in months %}
  {% call statement('write_packed_month_' ~ month) -%}
    insert overwrite directory {{ spark_mart_literal(run_scratch ~ '/month_index=' ~ month) }} using parquet
    select
        {{ keys | join(', ') }},
        {%- for field, name in lists %}
        {#- the if() only makes the element type nullable (the product is never null here): Spark
            would write the elements of a non-null expression (a '' string) as required -#}
        transform(elements, element -> if(element.{{ product }} is null, null, element.{{ field }}))
            as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from (
        select
            {{ keys | join(', ') }},
            array_sort(collect_list(
                case when {{ product }} is not null then struct({{ lists | map('first') | join(', ') }}) end
            )) as elements
        from (
            {{ sql }}
        ) as packed_elements
        where month_index = {{ month }}
        group by {{ keys | join(', ') }}
    ) as packed_rows
  {%- endcall %}
  {% endfor %}

  {% call statement('write_packed') -%}
    insert overwrite directory {{ location_literal }} using parquet
    select /*+ COALESCE(1) */ {{ keys | join(', ') }}, {{ lists | map('last') | join(', ') }}
    from parquet.`{{ run_scratch | replace('`', '``') }}`
  {%- endcall %}

  {% call statement('empty_scratch') -%}
    insert overwrite directory {{ spark_mart_literal(scratch) }} using parquet select 1 as emptied where false
  {%- endcall %}

  {{ spark_mart_view(target_relation, existing_relation, location) }}

  {{ run_hooks(post_hooks) }}

  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
