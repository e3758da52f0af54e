{{ pack_features('feat_customer_product_monthly', ref('feat_customer_monthly')) }}
