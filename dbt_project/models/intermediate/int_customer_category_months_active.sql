{#-
  When a customer is active in a product category: one row per customer x category x month with a
  transaction on one of the category's products or a holding of one of them started (a purchase in The
  Complete Journey, an adoption in a bank). The category propensity task's rule of activity, once:
  fct_category_propensity_population (not active in the look-back) and fct_category_propensity_labels
  (active in the horizon) both read it.
-#}
with

products as (
    select * from {{ ref('stg_raw__products') }}
),

transactions as (
    select * from {{ ref('stg_raw__transactions') }}
),

holdings as (
    select * from {{ ref('stg_raw__holdings') }}
),

final as (
    select distinct
        transactions.customer_id,
        products.category,
        {{ month_index('transactions.occurred_on') }} as month_index
    from transactions
    inner join products
        on transactions.product_id = products.product_id
    union
    select distinct
        holdings.customer_id,
        products.category,
        {{ month_index('holdings.started_on') }} as month_index
    from holdings
    inner join products
        on holdings.product_id = products.product_id
)

select * from final
