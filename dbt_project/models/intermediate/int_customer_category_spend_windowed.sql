with

transactions as (
    select * from {{ ref('stg_raw__transactions') }}
),

products as (
    select * from {{ ref('stg_raw__products') }}
),

customers as (
    select * from {{ ref('int_customers_keyed') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

monthly as (
    select
        customers.customer_key,
        products.category,
        {{ month_index('transactions.occurred_on') }} as month_index,
        sum(transactions.amount) as sum_amount,
    from transactions
    inner join products
        on transactions.product_id = products.product_id
    inner join customers
        on transactions.customer_id = customers.customer_id
    group by all
),

-- each month's spend counts at the snapshots of that month and the 11 following ones
final as (
    select
        monthly.customer_key,
        monthly.category,
        spine.month_index,
        cast(sum(monthly.sum_amount) as double) as sum_spend_last_12_months,
    from monthly
    inner join spine
        on spine.month_index >= monthly.month_index
        and spine.month_index <= monthly.month_index + 11
    group by all
)

select * from final
