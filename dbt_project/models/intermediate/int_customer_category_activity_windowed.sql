{#-
  What a customer does in each product category at each snapshot: products of the category owned, and
  transactions on the category's products in the last 3 and 12 calendar months (transactions without a
  product are left out), also as a share of the customer's spend on every category in the same months.
  Only customer x category x snapshot with something to say have a row.
-#}
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

owned as (
    select * from {{ ref('int_customer_products_owned') }}
),

monthly as (
    select
        customers.customer_key,
        products.category,
        {{ month_index('transactions.occurred_on') }} as month_index,
        sum(transactions.amount) as sum_amount,
        count(*) as count_transactions
    from transactions
    inner join products
        on transactions.product_id = products.product_id
    inner join customers
        on transactions.customer_id = customers.customer_id
    group by all
),

-- each month's transactions count at the snapshots of that month and the 11 following ones
spend as (
    select
        monthly.customer_key,
        monthly.category,
        spine.month_index,
        sum(monthly.sum_amount) as sum_spend_last_12_months,
        sum(monthly.sum_amount) filter (where monthly.month_index >= spine.month_index - 2)
            as sum_spend_last_3_months,
        sum(monthly.count_transactions) filter (where monthly.month_index >= spine.month_index - 2)
            as count_transactions_last_3_months
    from monthly
    inner join spine
        on spine.month_index >= monthly.month_index
        and spine.month_index <= monthly.month_index + 11
    group by all
),

owned_counts as (
    select
        customer_key,
        category,
        month_index,
        count(*) as count_products_owned
    from owned
    group by all
),

activity as (
    select
        coalesce(spend.customer_key, owned_counts.customer_key) as customer_key,
        coalesce(spend.category, owned_counts.category) as category,
        coalesce(spend.month_index, owned_counts.month_index) as month_index,
        cast(coalesce(owned_counts.count_products_owned, 0) as integer) as count_products_owned,
        cast(coalesce(spend.sum_spend_last_3_months, 0.0) as double) as sum_spend_last_3_months,
        cast(coalesce(spend.sum_spend_last_12_months, 0.0) as double) as sum_spend_last_12_months,
        cast(coalesce(spend.count_transactions_last_3_months, 0) as integer) as count_transactions_last_3_months
    from spend
    full outer join owned_counts
        on spend.customer_key = owned_counts.customer_key
        and spend.category = owned_counts.category
        and spend.month_index = owned_counts.month_index
),

-- the customer's spend on every category in the same months: what the category's share is a share of
all_categories as (
    select
        *,
        sum(sum_spend_last_3_months) over (partition by customer_key, month_index)
            as sum_spend_all_categories_last_3_months,
        sum(sum_spend_last_12_months) over (partition by customer_key, month_index)
            as sum_spend_all_categories_last_12_months
    from activity
),

final as (
    select
        customer_key,
        category,
        month_index,
        count_products_owned,
        sum_spend_last_3_months,
        sum_spend_last_12_months,
        count_transactions_last_3_months,
        cast(
            case
                when sum_spend_all_categories_last_3_months > 0
                    then sum_spend_last_3_months / sum_spend_all_categories_last_3_months
                else 0.0
            end as double
        ) as share_spend_last_3_months,
        cast(
            case
                when sum_spend_all_categories_last_12_months > 0
                    then sum_spend_last_12_months / sum_spend_all_categories_last_12_months
                else 0.0
            end as double
        ) as share_spend_last_12_months
    from all_categories
)

-- stored in snapshot order: the packer reads one snapshot at a time through the pair model, which joins
-- this table on month_index; grouped by month, that read skips the other months' row groups (at 1M
-- customers x 24 months, 42M rows: every row group was scanned once per month otherwise)
select * from final
order by month_index
