{#-
  Each population customer's holding starts in the last sequence_start_history_months months, of products
  the cross-sell features cover (int_products_cross_sold), still owned or not (a short-lived product leaves
  its boost behind it): per product the latest start, the cross_sell_owned_limit most recent products,
  with the months since the start in bands (sequence_start_bands: the band is the largest bound <= the
  months since the start). The sequence features read a boost after each such start, not only the latest.
-#}
{%- set bands = var('sequence_start_bands') | sort -%}

with

population as (
    select * from {{ ref('int_customers_in_population') }}
),

segments as (
    select * from {{ ref('int_holdings_segmented') }}
),

covered as (
    select * from {{ ref('int_products_cross_sold') }}
),

starts as (
    select
        population.customer_key,
        population.month_index,
        segments.product_key,
        max(segments.segment_start_month_index) as started_month_index
    from population
    inner join segments
        on population.customer_key = segments.customer_key
        and segments.segment_start_month_index <= population.month_index
        and segments.segment_start_month_index
            > population.month_index - {{ var('sequence_start_history_months') | int }}
    inner join covered
        on segments.product_key = covered.product_key
        and population.month_index = covered.month_index
    where segments.is_owned
    group by all
),

ranked as (
    select
        *,
        month_index - started_month_index as months_since_start,
        row_number() over (
            partition by customer_key, month_index order by started_month_index desc, product_key
        ) as recency_rank
    from starts
),

final as (
    select
        customer_key,
        month_index,
        cast(product_key as integer) as from_product_key,
        cast(months_since_start as integer) as months_since_start,
        cast(
            case
                {%- for bound in bands | reverse %}
                when months_since_start >= {{ bound | int }} then {{ bound | int }}
                {%- endfor %}
            end as integer
        ) as start_band
    from ranked
    where recency_rank <= {{ var('cross_sell_owned_limit') | int }}
)

select * from final
