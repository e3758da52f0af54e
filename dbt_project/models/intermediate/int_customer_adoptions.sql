{#-
  Every adoption: a holding start in month m of a product the customer did not own at the end of month
  m - 1 (int_holdings_segmented: a not-owned segment ending where the next start is). What the
  product-to-product counts call adopting c "the next month" after a snapshot m - 1.
-#}
with

segments as (
    select * from {{ ref('int_holdings_segmented') }}
),

final as (
    select
        customer_key,
        product_key,
        next_start_month_index as adopted_month_index
    from segments
    where not is_owned
        and next_start_month_index is not null
        and segment_end_month_index = next_start_month_index
)

select * from final
