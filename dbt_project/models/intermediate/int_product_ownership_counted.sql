with

customers as (
    select * from {{ ref('stg_raw__customers') }}
),

segments as (
    select * from {{ ref('int_holdings_segmented') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

population as (
    select * from {{ ref('int_customers_in_population') }}
),

products as (
    select * from {{ ref('stg_raw__products') }}
),

-- an owner is in the population from the later of the holding's start and the join month
owned_periods as (
    select
        segments.product_id,
        customers.segment,
        greatest(segments.segment_start_month_index, {{ month_index('customers.joined_on') }})
            as owned_from_month_index,
        segments.segment_end_month_index as owned_until_month_index
    from segments
    inner join customers
        on segments.customer_id = customers.customer_id
    where segments.is_owned
),

owners as (
    select
        owned_periods.product_id,
        owned_periods.segment,
        spine.month_index,
        count(*) as count_owners
    from owned_periods
    inner join spine
        on spine.month_index >= owned_periods.owned_from_month_index
        and spine.month_index < owned_periods.owned_until_month_index
    group by all
),

population_sizes as (
    select
        segment,
        month_index,
        count(*) as count_population
    from population
    group by all
),

grid as (
    select
        products.product_id,
        population_sizes.segment,
        population_sizes.month_index,
        population_sizes.count_population
    from products
    cross join population_sizes
),

final as (
    select
        grid.product_id,
        grid.segment,
        grid.month_index,
        cast(coalesce(owners.count_owners, 0) as integer) as count_owners,
        cast(grid.count_population as integer) as count_population
    from grid
    left join owners
        on grid.product_id = owners.product_id
        and grid.segment is not distinct from owners.segment
        and grid.month_index = owners.month_index
)

select * from final
