{#-
  `packed_parquet`: writes a packed model (see macros/pack_features.sql) to `<external_root>/<model>.parquet`.

  The model's SQL gives one row per element (the snapshot's month_index, customer_key, product_key, one
  encoded value per feature); the `population` model (config) gives the packed rows (customer_id,
  event_timestamp, customer_key, month_index), with or without elements; the `products` model (config)
  gives each product_key's product_id, which the lists carry (DuckDB sorts the elements without it).
  Building the lists with DuckDB's list() costs ~90 ns per value and holds every group in a hash table;
  instead this hands
  both to nextbest.features.packing.write_packed_parquet (a Python job on dbt's own DuckDB connection),
  which runs them on a few months at a time, as many as hold `PACK_CHUNK_ROWS` element rows (the
  population's plus the `elements` model's, config: the candidates, with month_index; the model states
  `-- depends_on` it): DuckDB sorts the elements on the integer keys, NumPy matches them to the
  population rows and pyarrow builds each list column from the row offsets, streaming to one parquet file
  (without month_index and the integer keys). A view over the file takes the model's place, as with
  `parquet_file`, so refs and tests read the file.
-#}
{% materialization packed_parquet, adapter='duckdb' %}
  {%- set location = render(config.get('location', default=external_location(this, config))) -%}
  {%- set population = ref(config.require('population')) -%}
  {%- set elements = ref(config.require('elements')) -%}
  {%- set products = ref(config.require('products')) -%}
  {#- element rows per month: the population's (one each without candidates) plus the candidates' -#}
  {%- set chunk_sizes_sql -%}
    select population.month_index, population.n + coalesce(elements.n, 0)
    from (select month_index, count(*) as n from {{ population }} group by 1) as population
    left join (select month_index, count(*) as n from {{ elements }} group by 1) as elements
        on population.month_index = elements.month_index
    order by 1
  {%- endset -%}
  {%- set location_literal = "'" ~ (location | replace("'", "''")) ~ "'" -%}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set existing_relation = load_cached_relation(this) -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('write_packed', language='python') -%}
from pathlib import Path

from nextbest.features.packing import PACK_CHUNK_ROWS, chunk_ranges, write_packed_parquet


class dbtObj:
    def __init__(self, load_df_function):
        pass


def model(dbt, con):
    sizes = con.execute({{ tojson(chunk_sizes_sql) }}).fetchall()
    write_packed_parquet(
        con,
        elements_query={{ tojson(sql) }},
        population_query={{ tojson("select * from " ~ population) }},
        path=Path({{ tojson(location) }}),
        keys=["customer_id", "event_timestamp"],
        product="product_id",
        group_keys=["month_index", "customer_key"],
        chunks=chunk_ranges(sizes, PACK_CHUNK_ROWS),
        element_key="product_key",
        products_query={{ tojson("select product_key, product_id from " ~ products) }},
    )


def materialize(df, con):
    pass
  {%- endcall %}

  {{ return(parquet_view_in_place(target_relation, existing_relation, location_literal)) }}
{% endmaterialization %}
