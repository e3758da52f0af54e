{#-
  counts_before_snapshot(counted, keys, windowed, spine, history, carried=[]): one row per key of
  `counted` (every distinct combination of `keys` in it) x every snapshot s of `spine`, with each count
  column of `windowed` (a mapping: the count in `counted` -> its name here) summed over the rows of
  `counted` at the months t with s - history <= t <= s - 1 (a month without a row counts 0; null when
  the window holds no month, i.e. at the first snapshot). Counts of month t that look at month t + 1 (an
  adoption the next month) are then all known at s. `carried` columns of `counted` are copied from the
  row at s itself (null without one): facts known at s, such as who owns what.
  The one shape of "the same key at every snapshot, then the months before it" behind the transition
  lifts (int_product_transitions_windowed, int_product_transitions_after_start_windowed).
-#}
{% macro counts_before_snapshot(counted, keys, windowed, spine, history, carried=[]) -%}
    select
        {%- for key in keys %}
        keyed.{{ key }},
        {%- endfor %}
        {{ spine }}.month_index,
        {%- for column in carried %}
        {{ counted }}.{{ column }},
        {%- endfor %}
        {%- for column, name in windowed.items() %}
        sum(coalesce({{ counted }}.{{ column }}, 0)) over before_snapshot as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
    from (select distinct {{ keys | join(', ') }} from {{ counted }}) as keyed
    cross join {{ spine }}
    left join {{ counted }}
        on {% for key in keys %}keyed.{{ key }} = {{ counted }}.{{ key }}
        and {% endfor %}{{ spine }}.month_index = {{ counted }}.month_index
    window before_snapshot as (
        partition by {% for key in keys %}keyed.{{ key }}{{ ", " if not loop.last }}{% endfor %}
        order by {{ spine }}.month_index
        range between {{ history | int }} preceding and 1 preceding
    )
{%- endmacro %}
