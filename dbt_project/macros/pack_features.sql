{#-
    The online layout of a customer x product feature model: one row per customer x snapshot with the
    customer's candidate products in `candidate_product_ids` and, aligned element by element with it,
    one list per feature column documented in the pair model's yml.

    pack_features gives the elements, one row per customer x snapshot x candidate, which the
    `packed_parquet` materialization sorts into lists and gives every population row (on DuckDB with
    NumPy and pyarrow, see macros/materializations/packed_parquet.sql; on Spark in SQL,
    packed_parquet_spark.sql); a population row without candidates gets empty lists.

    Lists carry no nulls (Feast's online store would turn a null element into 0), so a missing value is
    encoded explicitly and decoded by nextbest.features.packing: numbers and booleans travel as double with NaN
    for null, strings as varchar with '' for null.
-#}

{% macro pair_join_columns() %}
    {#- The pair model's columns kept for the packer, never features (nextbest.columns.PAIR_JOIN_COLUMNS):
        the snapshot's month_index, and the integer keys customer_key / product_key (int_customers_keyed,
        int_products_keyed: numbered in customer_id / product_id order), which the packer matches to the
        population and sorts by instead of the string ids (one month of the 1M-customer bank packed in
        9.2 s instead of 9.6 s, the same file). -#}
    {{ return(['month_index', 'customer_key', 'product_key']) }}
{% endmacro %}


{% macro packed_feature_columns(model_name) %}
    {#- The pair model's documented feature columns (yml order): every column but the keys and
        pair_join_columns. -#}
    {%- set keys = ['customer_id', 'product_id', 'event_timestamp'] + pair_join_columns() -%}
    {%- set columns = [] -%}
    {%- if execute -%}
        {%- for node in graph.nodes.values() -%}
            {%- if node.resource_type == 'model' and node.name == model_name -%}
                {%- for column in node.columns.values() -%}
                    {%- if column.name not in keys -%}
                        {%- do columns.append(column) -%}
                    {%- endif -%}
                {%- endfor -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if columns | length == 0 -%}
            {{ exceptions.raise_compiler_error("pack_features: model " ~ model_name ~ " documents no feature column in its yml") }}
        {%- endif -%}
    {%- endif -%}
    {{ return(columns) }}
{% endmacro %}


{% macro packed_element(column) %}
    {#- One feature value as a list element: NaN / '' stand for null (see nextbest.features.packing, which defines the same markers). -#}
    {%- set data_type = (column.data_type or '') | lower -%}
    {%- if data_type == 'varchar' -%}
        coalesce(cast({{ column.name }} as string), '')
    {%- elif data_type in ['integer', 'bigint', 'double', 'boolean'] -%}
        coalesce(cast({{ column.name }} as double), 'nan'::double)
    {%- else -%}
        {{ exceptions.raise_compiler_error("pack_features: column " ~ column.name ~ " has data_type '" ~ data_type ~ "'; expected varchar, integer, bigint, double or boolean") }}
    {%- endif -%}
{% endmacro %}


{% macro pack_features(pair_model_name, population_relation) %}
    {#- population_relation: one row per (customer_id, event_timestamp) that must get a packed row, with
        or without candidates (so the online store's latest row is always the latest snapshot's), with
        the customer's customer_key and the snapshot's month_index. Use with materialized='packed_parquet'
        and config population = that model's name.
        The elements carry month_index, the snapshot's month: the materialization cuts its work into
        chunks of months with a filter on it, and because the pair model joins its relations on it,
        DuckDB pushes that filter into the scan of every relation the pair model joins, so each chunk
        joins its own months only (at 1M customers, not every month's rows of every relation once per
        chunk). They also carry customer_key and product_key: integers in customer_id / product_id
        order, which the materialization matches and sorts on (then leaves out). -#}
    {{ return(adapter.dispatch('pack_features')(pair_model_name, population_relation)) }}
{% endmacro %}


{% macro default__pack_features(pair_model_name, population_relation) %}
    {#- DuckDB: the elements only, without the customer's id and snapshot time, nor the product's id. The
        packed_parquet materialization reads the population itself and gives each of its rows the
        elements of the same (month_index, customer_key), in NumPy: a `population left join pairs` here
        built its hash table on a month's 10M candidates at 1M customers (one month's query 9.2 s, 5.9 s
        without it). It looks the product ids up from product_key (config `products`), so that DuckDB
        does not sort a string with every element. -#}
    {%- set columns = packed_feature_columns(pair_model_name) -%}
with

pairs as (
    select * from {{ ref(pair_model_name) }}
),

final as (
    select
        month_index,
        customer_key,
        product_key,
        {%- for column in columns %}
        {{ packed_element(column) }} as {{ column.name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from pairs
)

select * from final
{% endmacro %}


{% macro spark__pack_features(pair_model_name, population_relation) %}
    {#- Spark: one row per element, and one with a null product_id per population row without
        candidates, which packed_parquet_spark.sql collects into empty lists. -#}
    {%- set columns = packed_feature_columns(pair_model_name) -%}
with

population as (
    select customer_id, customer_key, event_timestamp, month_index from {{ population_relation }}
),

pairs as (
    select * from {{ ref(pair_model_name) }}
),

final as (
    select
        population.customer_id,
        population.event_timestamp,
        population.month_index,
        population.customer_key,
        pairs.product_key,
        pairs.product_id,
        {%- for column in columns %}
        {{ packed_element(column) }} as {{ column.name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from population
    left join pairs
        on population.customer_key = pairs.customer_key
        and population.month_index = pairs.month_index
)

select * from final
{% endmacro %}
