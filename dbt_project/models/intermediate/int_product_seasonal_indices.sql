{#-
  A product's seasonal index for the label window of each snapshot m (the month after it): how far its
  adoptions in that calendar month of earlier years (the label windows of the snapshots m - 12, m - 24,
  ...) stood above or below those expected at each of those years' rates (the snapshot's candidates x the
  product's adoption rate over the 12 label windows centred on it, j - 6 .. j + 5, all observed by m: a
  product that grows or shrinks over the year gets no season from its trend).
  Seasons rarely start and end within one calendar month, and a month's few adoptions are noisy: the
  index reads the adjacent calendar months of earlier years too (the rows of m - 1 and m + 1, whose
  earlier years m - 13, m - 11, ... are also observed by m), each weighted
  var('seasonal_index_neighbour_month_weight') against the label month's own 1 (0 = the label month alone).
  Shrunk towards 1 as if p more adoptions had come exactly as expected (a gamma prior on the season's
  factor, of mean 1 and variance 1 / p); null without an earlier year (the first year's season is
  unknown, not absent). p is estimated from the data (empirical Bayes): the variance of a month's
  adoptions around their expected count, beyond what chance gives (E[(adopted - expected)^2 - adopted] =
  expected^2 x tau2 for Poisson adoptions whose rate varies by a factor of variance tau2), over every month
  observed by m with its year around it (j <= m - 6): tau2 of the product, averaged with tau2 of all
  products as if the latter had var('seasonal_index_prior_pooling_months') months of its own; p = 1 / tau2,
  bounded to [2, 1000]. A product whose months vary no more than chance says gets p = 1000 (no season); a
  product with a strong season a small p (its own adoptions decide). var('seasonal_index_prior_adoptions')
  is p for a product with no such month yet.
-#}
{%- set prior = var('seasonal_index_prior_adoptions') -%}
{%- set pooling_months = var('seasonal_index_prior_pooling_months') | float -%}
{%- set neighbour_weight = var('seasonal_index_neighbour_month_weight') | float -%}

with

products as (
    select * from {{ ref('stg_raw__products') }}
),

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

adoptions as (
    select * from {{ ref('int_product_adoptions_aggregated') }}
),

product_months as (
    select
        products.product_id,
        spine.month_index,
        coalesce(adoptions.count_candidates, 0) as count_candidates,
        coalesce(adoptions.count_adopted_within_1_months, 0) as count_adopted
    from products
    cross join spine
    left join adoptions
        on products.product_id = adoptions.product_id
        and spine.month_index = adoptions.month_index
),

-- the year centred on each snapshot (its label window, the 6 before and the 5 after): the rate its season
-- is measured against
years_around as (
    select
        *,
        sum(count_candidates) over year_around as count_candidates_year_around,
        sum(count_adopted) over year_around as count_adopted_year_around
    from product_months
    window year_around as (
        partition by product_id order by month_index range between 6 preceding and 5 following
    )
),

expected as (
    select
        *,
        count_candidates * count_adopted_year_around / nullif(count_candidates_year_around, 0)
            as count_expected_at_year_rate
    from years_around
),

-- how far each month's adoptions stood from those expected, beyond chance (Poisson: adopted)
dispersion_monthly as (
    select
        product_id,
        month_index,
        power(count_adopted - count_expected_at_year_rate, 2) - count_adopted as excess_square,
        power(count_expected_at_year_rate, 2) as expected_square
    from expected
    where count_expected_at_year_rate > 0
),

-- per product and snapshot m: the months j <= m - 6, whose years around them are observed by m
dispersion_product as (
    select
        dispersion_monthly.product_id,
        spine.month_index,
        -- in fixed point (as below): a rebuild, or another engine, sums to the same double
        {{ exact_sum('dispersion_monthly.excess_square', 4) }} as excess_square,
        {{ exact_sum('dispersion_monthly.expected_square', 4) }} as expected_square,
        count(*) as count_months
    from spine
    inner join dispersion_monthly
        on dispersion_monthly.month_index <= spine.month_index - 6
    group by all
),

dispersion_all_products as (
    select
        month_index,
        {{ exact_sum('excess_square', 4) }} / {{ exact_sum('expected_square', 4) }} as season_variance
    from dispersion_product
    group by all
),

prior_strength as (
    select
        dispersion_product.product_id,
        dispersion_product.month_index,
        least(1000.0, greatest(2.0, 1.0 / greatest(0.001,
            (
                dispersion_product.count_months * dispersion_product.excess_square
                / dispersion_product.expected_square
                + {{ pooling_months }} * dispersion_all_products.season_variance
            ) / (dispersion_product.count_months + {{ pooling_months }})
        ))) as prior_adoptions
    from dispersion_product
    inner join dispersion_all_products
        on dispersion_product.month_index = dispersion_all_products.month_index
),

-- the snapshots 12, 24, ... months before m: their label windows are in the calendar month of m's
same_month_earlier_years as (
    select
        product_id,
        month_index,
        sum(count_adopted) over earlier_years as count_adopted_same_month_earlier_years,
        -- in fixed point (as macro exact_sum): a rebuild, or another engine, sums to the same double
        cast(
            sum(cast(count_expected_at_year_rate as decimal(18, 9))) over earlier_years as double
        ) as count_expected_same_month_earlier_years
    from expected
    window earlier_years as (
        partition by product_id, month_index % 12
        order by month_index range between unbounded preceding and 12 preceding
    )
),

-- the label month and its calendar neighbours (m - 1 and m + 1, when snapshots with an earlier year),
-- weighted 1 and neighbour_weight
around_weighted as (
    select
        centre.product_id,
        centre.month_index,
        cast(
            case when around.month_index = centre.month_index then 1.0 else {{ neighbour_weight }} end as double
        ) as weight,
        cast(around.count_adopted_same_month_earlier_years as double) as count_adopted,
        around.count_expected_same_month_earlier_years as count_expected
    from same_month_earlier_years as centre
    inner join same_month_earlier_years as around
        on centre.product_id = around.product_id
        and around.month_index between centre.month_index - 1 and centre.month_index + 1
        and around.count_expected_same_month_earlier_years is not null
    where centre.count_expected_same_month_earlier_years is not null
),

with_neighbours as (
    select
        product_id,
        month_index,
        -- in fixed point: a rebuild, or another engine, sums to the same double
        {{ exact_sum('weight * count_adopted') }} / {{ exact_sum('weight') }} as count_adopted_around,
        {{ exact_sum('weight * count_expected') }} / {{ exact_sum('weight') }} as count_expected_around
    from around_weighted
    group by all
),

combined as (
    select
        same_month_earlier_years.product_id,
        same_month_earlier_years.month_index,
        same_month_earlier_years.count_adopted_same_month_earlier_years,
        same_month_earlier_years.count_expected_same_month_earlier_years,
        with_neighbours.count_adopted_around,
        with_neighbours.count_expected_around,
        coalesce(prior_strength.prior_adoptions, {{ prior }}) as prior_adoptions
    from same_month_earlier_years
    left join with_neighbours
        on same_month_earlier_years.product_id = with_neighbours.product_id
        and same_month_earlier_years.month_index = with_neighbours.month_index
    left join prior_strength
        on same_month_earlier_years.product_id = prior_strength.product_id
        and same_month_earlier_years.month_index = prior_strength.month_index
),

final as (
    select
        product_id,
        month_index,
        cast(count_adopted_same_month_earlier_years as integer) as count_adopted_same_month_earlier_years,
        cast(count_expected_same_month_earlier_years as double) as count_expected_same_month_earlier_years,
        cast(prior_adoptions as double) as prior_adoptions,
        cast(
            (count_adopted_around + prior_adoptions) / (count_expected_around + prior_adoptions) as double
        ) as seasonal_index_label_month
    from combined
)

select * from final
