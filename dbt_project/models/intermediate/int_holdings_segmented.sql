{#-
  The month timeline of every customer x product that was ever held, cut into disjoint segments
  [segment_start_month_index, segment_end_month_index) in which the state at a month-end snapshot is constant:
  owned (some holding has month(started_on) <= m < month(ended_on)), or not owned with a known next start
  and last end. Pairs never held have no rows: they are not owned at any snapshot.
-#}
{%- set minus_infinity = -1 -%}
{%- set plus_infinity = 2147483647 -%}

with

holdings as (
    select * from {{ ref('stg_raw__holdings') }}
),

customers as (
    select * from {{ ref('int_customers_keyed') }}
),

products as (
    select * from {{ ref('int_products_keyed') }}
),

holding_months as (
    select
        holdings.customer_id,
        holdings.product_id,
        customers.customer_key,
        products.product_key,
        holdings.started_on,
        {{ month_index('started_on') }} as start_month_index,
        {{ month_index('ended_on') }} as end_month_index
    from holdings
    inner join customers
        on holdings.customer_id = customers.customer_id
    inner join products
        on holdings.product_id = products.product_id
),

ordered as (
    select
        *,
        lag(end_month_index) over pair as previous_end_month_index,
        row_number() over pair = count(*) over (partition by customer_id, product_id) as is_last_holding
    from holding_months
    window pair as (partition by customer_id, product_id order by started_on)
),

-- not owned, before each holding: from the previous holding's end (or forever) to this start
gaps_before as (
    select
        customer_id,
        product_id,
        customer_key,
        product_key,
        coalesce(previous_end_month_index, {{ minus_infinity }}) as segment_start_month_index,
        start_month_index as segment_end_month_index,
        false as is_owned,
        start_month_index as next_start_month_index,
        previous_end_month_index as last_end_month_index
    from ordered
),

-- owned: the months whose month-end falls inside the holding (empty when it starts and ends in one month)
owned as (
    select
        customer_id,
        product_id,
        customer_key,
        product_key,
        start_month_index as segment_start_month_index,
        coalesce(end_month_index, {{ plus_infinity }}) as segment_end_month_index,
        true as is_owned,
        cast(null as integer) as next_start_month_index,
        cast(null as integer) as last_end_month_index
    from ordered
),

-- not owned, after the last holding ended
gap_after as (
    select
        customer_id,
        product_id,
        customer_key,
        product_key,
        end_month_index as segment_start_month_index,
        {{ plus_infinity }} as segment_end_month_index,
        false as is_owned,
        cast(null as integer) as next_start_month_index,
        end_month_index as last_end_month_index
    from ordered
    where is_last_holding and end_month_index is not null
),

segments as (
    select * from gaps_before
    union all
    select * from owned
    union all
    select * from gap_after
),

final as (
    select
        customer_id,
        product_id,
        customer_key,
        product_key,
        cast(segment_start_month_index as integer) as segment_start_month_index,
        cast(segment_end_month_index as integer) as segment_end_month_index,
        is_owned,
        cast(next_start_month_index as integer) as next_start_month_index,
        cast(last_end_month_index as integer) as last_end_month_index
    from segments
    where segment_start_month_index < segment_end_month_index
)

select * from final
