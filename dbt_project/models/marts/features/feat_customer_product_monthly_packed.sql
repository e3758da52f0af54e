{{ config(
    materialized='packed_parquet',
    population='int_customers_in_population',
    elements='int_candidates_retrieved',
    products='int_products_keyed'
) }}
-- depends_on: {{ ref('int_candidates_retrieved') }}  (the packer's chunk sizes count its rows)
-- depends_on: {{ ref('int_products_keyed') }}  (the lists' product ids, by product_key)

{{ pack_features('feat_customer_product_monthly', ref('int_customers_in_population')) }}
