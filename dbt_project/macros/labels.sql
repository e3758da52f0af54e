{#-
  The ranking label's rule, in one place (fct_ranking_labels, fct_candidate_retrieval_recall): a
  candidate at snapshot month m is adopted when its next holding start falls within horizon_months
  months after m; a customer's first burn_in_months months (counting the month they joined) get no label.
-#}
{% macro is_adopted_within_horizon(next_start_month_index, month_index) -%}
    coalesce({{ next_start_month_index }} <= {{ month_index }} + {{ var('horizon_months') | int }}, false)
{%- endmacro %}


{% macro is_past_burn_in(month_index, joined_month_index) -%}
    {{ month_index }} >= {{ joined_month_index }} + {{ var('burn_in_months') }} - 1
{%- endmacro %}
