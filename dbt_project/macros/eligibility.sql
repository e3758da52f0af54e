{#-
  The eligibility rule of a product for a customer's age at a snapshot: a product without an age bound is
  open to everyone; one with a bound needs a known age inside it. Used by int_candidates_eligible and by
  the models that count candidates without expanding every customer x product (int_population_holding_states,
  int_product_adoptions_counted, fct_candidate_retrieval_recall), so that they agree.
-#}
{% macro is_age_eligible(age_years, min_age, max_age) -%}
    (
        ({{ min_age }} is null and {{ max_age }} is null)
        or (
            {{ age_years }} is not null
            and {{ age_years }} >= coalesce({{ min_age }}, {{ age_years }})
            and {{ age_years }} <= coalesce({{ max_age }}, {{ age_years }})
        )
    )
{%- endmacro %}

{#- a product with an age bound (eligible for some customers only) -#}
{% macro has_age_bound(min_age, max_age) -%}
    ({{ min_age }} is not null or {{ max_age }} is not null)
{%- endmacro %}
