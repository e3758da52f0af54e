{{ config(materialized='packed_parquet', population='feat_customer_monthly') }}

{{ pack_features('feat_customer_product_monthly', ref('feat_customer_monthly')) }}
