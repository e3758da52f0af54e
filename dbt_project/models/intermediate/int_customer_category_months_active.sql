{#-
  When a customer is active in a product category: one row per customer x category x month with a
  transaction on one of the category's products or a holding of one of them started (a purchase in The
  Complete Journey, an adoption in a bank). The category propensity task's rule of activity, once:
  fct_category_propensity_population (not active in the look-back) and fct_category_propensity_labels
  (active in the horizon) both read it.
  Keyed by integers (int_customers_keyed; the product's category_key from int_products_keyed): the
  population looks up the last active month of the customer x snapshot x category pairs with activity
  before the snapshot by a point-in-time join, which on string keys took twice as long.
-#}
with

products as (
    select * from {{ ref('int_products_keyed') }}
),

customers as (
    select * from {{ ref('int_customers_keyed') }}
),

transactions as (
    select * from {{ ref('stg_raw__transactions') }}
),

holdings as (
    select * from {{ ref('stg_raw__holdings') }}
),

active as (
    select distinct
        transactions.customer_id,
        products.category_key,
        {{ month_index('transactions.occurred_on') }} as month_index
    from transactions
    inner join products
        on transactions.product_id = products.product_id
    union
    select distinct
        holdings.customer_id,
        products.category_key,
        {{ month_index('holdings.started_on') }} as month_index
    from holdings
    inner join products
        on holdings.product_id = products.product_id
),

final as (
    select
        customers.customer_key,
        active.category_key,
        active.month_index
    from active
    inner join customers
        on active.customer_id = customers.customer_id
)

select * from final
