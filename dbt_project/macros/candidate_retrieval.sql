{#-
  The candidate retrieval stage of large catalogues (int_candidates_retrieved): on when the catalogue has
  more than candidate_retrieval_above_products products (a var; null = never). Decided when a model is
  run (the catalogue's size is data), so a model using it states `-- depends_on: int_products_keyed`.
  Below the threshold nothing is computed: every eligible candidate is a candidate, at no cost.
-#}
{% macro candidate_retrieval_is_active() %}
    {%- set above = var('candidate_retrieval_above_products') -%}
    {%- if not execute or above is none -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set result = run_query('select count(*) from ' ~ ref('int_products_keyed')) -%}
    {{ return(result.columns[0].values()[0] | int > above | int) }}
{% endmacro %}
