{{ config(materialized='packed_parquet', population='int_customers_in_population') }}

{{ pack_features('feat_customer_product_monthly', ref('int_customers_in_population')) }}
