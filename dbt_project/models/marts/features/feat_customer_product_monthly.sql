{#-
  A view, not a parquet file: ~320M rows at 1M customers x 24 months (about 9 GB of parquet, most of the
  build's time) that nothing reads as such. Its only consumer is feat_customer_product_monthly_packed (the
  layout Feast stores), whose packed_parquet materialization evaluates it one snapshot at a time; read it
  row by row from the build's DuckDB file (nextbest.duckdb), or unpacked from the packed model.
  Every relation is joined on the snapshot's month_index, which the model keeps: the packer filters on it,
  and DuckDB pushes that filter into each joined relation's scan (see macros/pack_features.sql). It keeps
  the integer customer_key and product_key too, which the packer matches and sorts on.
-#}
{{ config(materialized='view') }}

with

candidates as (
    select * from {{ ref('int_candidates_identified') }}
),

ownership as (
    select * from {{ ref('int_product_ownership_counted') }}
),

category_activity as (
    select * from {{ ref('int_customer_category_activity_windowed') }}
),

cross_sold as (
    select * from {{ ref('int_owned_sets_cross_sold') }}
),

adopter_profiles as (
    select * from {{ ref('int_product_adopter_profiles') }}
),

breadth_adoptions as (
    select * from {{ ref('int_product_adoptions_by_breadth') }}
),

recent_start_sets as (
    select * from {{ ref('int_customer_recent_start_sets') }}
),

recent_starts_cross_sold as (
    select * from {{ ref('int_recent_start_sets_cross_sold') }}
),

final as (
    select
        candidates.customer_id,
        candidates.product_id,
        candidates.event_timestamp,
        candidates.month_index,
        candidates.customer_key,
        candidates.product_key,
        cast(candidates.last_end_month_index is not null as integer) as is_previously_held,
        cast(candidates.month_index - candidates.last_end_month_index as integer) as months_since_last_held,
        cast(ownership.count_owners / nullif(ownership.count_population, 0) as double) as share_segment_owning,
        cast(coalesce(category_activity.sum_spend_last_12_months, 0.0) as double)
            as sum_spend_category_last_12_months,
        cast(coalesce(category_activity.sum_spend_last_3_months, 0.0) as double)
            as sum_spend_category_last_3_months,
        cast(coalesce(category_activity.count_transactions_last_3_months, 0) as integer)
            as count_transactions_category_last_3_months,
        cast(coalesce(category_activity.share_spend_last_3_months, 0.0) as double)
            as share_spend_category_last_3_months,
        cast(coalesce(category_activity.share_spend_last_12_months, 0.0) as double)
            as share_spend_category_last_12_months,
        cast(coalesce(category_activity.count_products_owned, 0) as integer) as count_products_owned_in_category,
        -- a customer owning nothing relates to no product: neutral lift 1, log-lift sum 0
        cast(coalesce(cross_sold.max_transition_lift, 1.0) as double) as max_transition_lift_from_owned,
        cast(coalesce(cross_sold.sum_log_transition_lift, 0.0) as double) as sum_log_transition_lift_from_owned,
        cast(coalesce(cross_sold.latest_transition_lift, 1.0) as double) as transition_lift_from_latest_started,
        -- a sequence: the lift among customers who, like this one, started the same product recently
        cast(
            case
                when candidates.is_latest_start_recent
                    then coalesce(cross_sold.latest_recent_start_transition_lift, 1.0)
                else 1.0
            end as double
        ) as transition_lift_from_recent_start,
        -- after every recent start, each at its months since the start; no recent start: neutral 1 / 0
        cast(coalesce(recent_starts_cross_sold.max_start_transition_lift, 1.0) as double)
            as max_transition_lift_from_starts_last_12_months,
        cast(coalesce(recent_starts_cross_sold.sum_log_start_transition_lift, 0.0) as double)
            as sum_log_transition_lift_from_starts_last_12_months,
        cast(coalesce(cross_sold.max_coownership_lift, 1.0) as double) as max_coownership_lift_with_owned,
        cast(coalesce(cross_sold.mean_log_coownership_lift, 0.0) as double) as mean_log_coownership_lift_with_owned,
        cast(candidates.age_years - adopter_profiles.mean_adopter_age_years as double)
            as age_gap_to_adopters_years,
        cast(
            (candidates.age_years - adopter_profiles.mean_adopter_age_years)
            / adopter_profiles.sd_adopter_age_years as double
        ) as age_z_score_among_adopters,
        cast(
            0.5 * power(
                (candidates.age_years - adopter_profiles.mean_population_age_years)
                / adopter_profiles.sd_population_age_years, 2
            )
            - 0.5 * power(
                (candidates.age_years - adopter_profiles.mean_adopter_age_years)
                / adopter_profiles.sd_adopter_age_years, 2
            )
            + ln(adopter_profiles.sd_population_age_years / adopter_profiles.sd_adopter_age_years) as double
        ) as age_log_lift_among_adopters,
        cast(breadth_adoptions.adoption_rate_same_breadth as double) as adoption_rate_same_breadth_last_3_months,
        cast(breadth_adoptions.adoption_lift_same_breadth as double) as adoption_lift_same_breadth_last_3_months
    from candidates
    left join ownership
        on candidates.product_id = ownership.product_id
        and candidates.segment is not distinct from ownership.segment
        and candidates.month_index = ownership.month_index
    left join category_activity
        on candidates.customer_key = category_activity.customer_key
        and candidates.category_key = category_activity.category_key
        and candidates.month_index = category_activity.month_index
    left join cross_sold
        on candidates.owned_set_id = cross_sold.owned_set_id
        and candidates.month_index = cross_sold.month_index
        and candidates.product_key = cross_sold.to_product_key
    left join adopter_profiles
        on candidates.product_key = adopter_profiles.product_key
        and candidates.month_index = adopter_profiles.month_index
    left join breadth_adoptions
        on candidates.product_key = breadth_adoptions.product_key
        and candidates.ownership_breadth = breadth_adoptions.ownership_breadth
        and candidates.month_index = breadth_adoptions.month_index
    left join recent_start_sets
        on candidates.customer_key = recent_start_sets.customer_key
        and candidates.month_index = recent_start_sets.month_index
    left join recent_starts_cross_sold
        on recent_start_sets.recent_start_set_id = recent_starts_cross_sold.recent_start_set_id
        and candidates.month_index = recent_starts_cross_sold.month_index
        and candidates.product_key = recent_starts_cross_sold.to_product_key
)

select * from final
