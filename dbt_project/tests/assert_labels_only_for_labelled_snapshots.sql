{#-
  Labels exist exactly for the labelled snapshots: no label row at a snapshot whose label window is not
  complete (or lies in the burn-in), and every labelled snapshot with candidates has its labels.
-#}
with

spine as (
    select * from {{ ref('int_snapshots_spined') }}
),

labels as (
    select * from {{ ref('fct_ranking_labels') }}
),

candidates as (
    select * from {{ ref('fct_candidates') }}
),

label_snapshots as (
    select distinct event_timestamp from labels
),

candidate_snapshots as (
    select distinct event_timestamp from candidates
),

labels_at_unlabelled as (
    select
        label_snapshots.event_timestamp,
        'labels at a snapshot that is not labelled' as problem
    from label_snapshots
    left join spine
        using (event_timestamp)
    where not coalesce(spine.is_labelled, false)
),

missing_labels as (
    select
        candidate_snapshots.event_timestamp,
        'labelled snapshot with candidates but no labels' as problem
    from candidate_snapshots
    inner join spine
        on candidate_snapshots.event_timestamp = spine.event_timestamp
    where spine.is_labelled
        and not exists (
            select 1 from label_snapshots
            where label_snapshots.event_timestamp = candidate_snapshots.event_timestamp
        )
),

final as (
    select * from labels_at_unlabelled
    union all
    select * from missing_labels
)

select * from final
