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
    {%- set query -%}
        select customer_id from {{ customers_relation }} where {{ customer_sample('customer_id') }}
    {%- endset -%}
    {%- set ids = run_query(query).columns[0].values() if execute else [] -%}
    {{ column }} in ({{ literal_list(ids) }})
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
  A test configured with `where: "__sampled_customers__"` runs on the customers customer_sample keeps,
  written as a literal list by in_sampled_customers (read when the test runs). The pair view's column
  tests use it: with a `where` over the view's output each would run the view's joins on every candidate
  (at 1M customers x 24 months, 144 s over its 14 tests, run before the packed model may start). Any
  other `where` is applied as dbt does (this overrides dbt's default__get_where_subquery).
  The customers are read from stg_raw__customers by its relation name in the graph: dbt renders `where`
  only when the test runs, too late for a ref() to declare a dependency (the tested models depend on it
  anyway).
-#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where == '__sampled_customers__' -%}
        {%- set customers = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
            | selectattr('name', 'equalto', 'stg_raw__customers') | map(attribute='relation_name') | first -%}
        {%- set where = in_sampled_customers(customers) -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
