{#-
  customer_sample(column): a predicate keeping a deterministic 1 / test_sample_modulo share of customers
  (by hash of the key). The grain tests of the candidate-grain models (hundreds of millions of rows at
  1M customers) use it as their `where`; the default modulo 1 keeps every row.
-#}
{% macro customer_sample(column='customer_id') -%}
    ({{ stable_hash(column) }} % {{ var('test_sample_modulo') }} = 0)
{%- endmacro %}


{#-
  in_sampled_customers(customers_relation, column): `column in ('id1', 'id2', ...)` over the customers of
  customers_relation that customer_sample keeps, read when the test runs and written as a literal list.
  DuckDB pushes a literal IN list into a view's own scans, so a test on the pair view joins only the
  sampled customers' candidates; customer_sample's hash predicate is evaluated after the view's joins ran
  on every candidate (unpacks_to at 1M x 24 months: 220 s with the predicate, 72 s with the list).
-#}
{% macro in_sampled_customers(customers_relation, column='customer_id') -%}
    {{ column }} in ({{ literal_list(sampled_customer_ids(customers_relation)) }})
{%- endmacro %}


{#- sampled_customer_ids(customers_relation): the customer ids customer_sample keeps, sorted (read when the
    calling test runs; [] when parsing). -#}
{% macro sampled_customer_ids(customers_relation) -%}
    {%- set query -%}
        select customer_id from {{ customers_relation }} where {{ customer_sample('customer_id') }}
    {%- endset -%}
    {{ return((run_query(query).columns[0].values() | sort) if execute else []) }}
{%- endmacro %}


{#-
  middle_run(ids, divisor): the middle 1 / divisor of the sorted `ids` (at least one id; all of them when
  divisor is 1), and in_id_run(ids, column): `column` within their range and among them. A contiguous run
  of a file's sort order lets parquet's row-group statistics skip the rest of the file: unpacks_to reads
  the packed file (sorted by month, then customer) for the middle eighth of the sampled customers at 1M
  customers x 24 months (var unpacks_to_sample_divisor, set by nextbest.pipeline) in 3.5 s instead of
  26.7 s for all of them, which decodes every list of the file.
-#}
{% macro middle_run(ids, divisor) -%}
    {%- set count = [1, (ids | length) // divisor] | max -%}
    {%- set start = [0, ((ids | length) - count) // 2] | max -%}
    {{ return(ids[start:start + count]) }}
{%- endmacro %}


{% macro in_id_run(ids, column='customer_id') -%}
    {%- if ids | length == 0 -%}
        false
    {%- else -%}
        {{ column }} between {{ string_literal(ids[0]) }} and {{ string_literal(ids[-1]) }}
        and {{ column }} in ({{ literal_list(ids) }})
    {%- endif -%}
{%- endmacro %}


{#- literal_list(values): 'v1', 'v2', ... as SQL string literals (string_literal); null when empty. -#}
{% macro literal_list(values) -%}
    {%- for value in values -%}
        {{ string_literal(value) }}{{ ", " if not loop.last }}
    {%- else -%}
        null
    {%- endfor -%}
{%- endmacro %}


{#-
  A test configured with `where: "__sampled_customers__"` runs on the customers customer_sample keeps
  (sampled_relation). The pair view's column tests use it: with a `where` over the view's output each
  would run the view's joins on every candidate (at 1M customers x 24 months, 144 s over its 14 tests,
  run before the packed model may start). Any other `where` is applied as dbt does (this overrides dbt's
  default__get_where_subquery).
-#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where == '__sampled_customers__' -%}
        {%- do return(sampled_relation(relation)) -%}
    {%- elif where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}


{#-
  sampled_relation(relation): the rows of `relation` (with a customer_id) of the customers customer_sample
  keeps. On DuckDB with one dbt thread (the default), computed once per dbt invocation into a table of the
  TEST_SAMPLE_SCHEMA schema that every test of the relation reads (the pair view's 14 column tests
  and unpacks_to at 1M customers x 24 months: each re-ran the view's joins for the sample, ~5 s a test);
  the schema is dropped when the invocation starts and ends (drop_test_samples). Otherwise (Spark, or
  threads that could race to create the table) a subquery with the customers as a literal list
  (in_sampled_customers), which DuckDB pushes into a view's own scans.
  The customers are read from stg_raw__customers by its relation name in the graph: dbt renders a test's
  `where` only when the test runs, too late for a ref() to declare a dependency (the tested models depend
  on it anyway). A relation with a customer_key is filtered on it too (sampled_rows).
-#}
{% macro sampled_relation(relation) -%}
    {%- if not execute -%}
        {%- do return(relation) -%}
    {%- endif -%}
    {%- set customers = model_relation_name('stg_raw__customers') -%}
    {%- if target.type != 'duckdb' or target.threads | int > 1 -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ sampled_rows(relation, customers) }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- endif -%}
    {%- set sample = api.Relation.create(
        database=relation.database, schema=test_sample_schema(), identifier=relation.identifier) -%}
    {%- set existing -%}
        select count(*) from information_schema.tables
        where table_catalog = {{ string_literal(sample.database) }}
            and table_schema = {{ string_literal(sample.schema) }}
            and table_name = {{ string_literal(sample.identifier) }}
    {%- endset -%}
    {%- if run_query(existing).columns[0].values()[0] == 0 -%}
        {%- call statement('create_test_sample') -%}
            create schema if not exists {{ sample.database }}.{{ sample.schema }};
            create table {{ sample }} as
            select * from {{ relation }} where {{ sampled_rows(relation, customers) }}
        {%- endcall -%}
        {#- committed now: the test that renders this runs in a transaction dbt rolls back -#}
        {%- do adapter.commit() -%}
    {%- endif -%}
    {%- do return(sample) -%}
{%- endmacro %}


{#-
  sampled_rows(relation, customers_relation): sampled_relation's predicate. in_sampled_customers, and where
  `relation` has a customer_key, that key among the sampled customers' (int_customers_keyed, as a literal
  list): DuckDB pushes a filter on customer_key through the candidate retrieval stage's window
  (int_candidates_retrieved, partitioned by customer and snapshot) into its scan, but not the filter on
  customer_id, which the candidates take from a later join. Without it, the pair view's sample at Complete
  Journey's product-type grain ranked every customer's candidates and could run out of memory.
-#}
{% macro sampled_rows(relation, customers_relation) -%}
    {{ in_sampled_customers(customers_relation) }}
    {%- if 'customer_key' in (adapter.get_columns_in_relation(relation) | map(attribute='name') | list) %}
        {%- set query -%}
            select customer_key from {{ model_relation_name('int_customers_keyed') }}
            where {{ customer_sample('customer_id') }}
            order by customer_key
        {%- endset %}
        and customer_key in ({{ run_query(query).columns[0].values() | join(', ') or 'null' }})
    {%- endif -%}
{%- endmacro %}


{#- model_relation_name(name): the relation of the model `name`, looked up in the graph (a test's `where` is
    rendered when the test runs, too late for a ref() to declare a dependency). -#}
{% macro model_relation_name(name) -%}
    {{ return(graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
        | selectattr('name', 'equalto', name) | map(attribute='relation_name') | first) }}
{%- endmacro %}


{#- The schema of sampled_relation's tables (in the build's DuckDB file, never a mart). -#}
{% macro test_sample_schema() -%}
    {{- return('test_samples') -}}
{%- endmacro %}


{#- on-run-start / on-run-end: drop sampled_relation's tables, so that every invocation samples the
    relations it built (DuckDB only: elsewhere sampled_relation makes none). -#}
{% macro drop_test_samples() -%}
    {%- if target.type == 'duckdb' -%}
        drop schema if exists {{ target.database }}.{{ test_sample_schema() }} cascade
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
