with

population as (
    select * from {{ ref('int_customers_in_population') }}
),

final as (
    select
        customer_id,
        event_timestamp,
        tenure_months,
        age_years,
        income,
        segment,
        region,
        count_products_owned,
        count_products_added_last_3_months,
        count_products_added_last_6_months,
        count_products_added_last_12_months,
        count_products_dropped_last_3_months,
        count_products_dropped_last_6_months,
        count_products_dropped_last_12_months,
        sum_spend_last_1_months,
        sum_spend_last_3_months,
        sum_spend_last_12_months,
        count_transactions_last_1_months,
        count_transactions_last_3_months,
        count_transactions_last_12_months,
        months_since_last_transaction,
        count_holdings_started_ever,
        months_since_last_holding_start,
        label_month_of_year
    from population
)

select * from final
