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
  Written as a mart is (parquet_file_spark.sql): one partition under `marts/_spark/<model>/`, which
  nextbest.dbt.publish_spark_marts links to `marts/<model>.parquet`; the model becomes a view over it.
-#}
{% materialization packed_parquet, adapter='spark' %}
  {%- set location = spark_mart_location(this) -%}
  {%- set location_literal = spark_mart_literal(location) -%}
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

  {% call statement('write_packed') -%}
    insert overwrite directory {{ location_literal }} using parquet
    select /*+ REPARTITION(1) */
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
        group by {{ keys | join(', ') }}
    ) as packed_rows
  {%- endcall %}

  {{ spark_mart_view(target_relation, existing_relation, location) }}

  {{ run_hooks(post_hooks) }}

  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
