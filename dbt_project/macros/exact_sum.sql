{#-
  exact_sum(expr, scale=9): sum(expr) in fixed point, as a double. Each value is rounded to `scale`
  decimals and the decimals are summed exactly, so the result does not depend on the order in which the
  engine's threads combine their partial sums. A plain sum of doubles does: two builds of the same raw
  data differed in the last bits (1e-14) of such sums, LightGBM's bins moved and a rebuild trained another
  model (tests/integration/test_build_reproducible.py). Scale 6 for money (values up to 1e12), 9 for logs
  (up to 1e9); an average is exact_sum(x) / count(x). `where`: the aggregate's FILTER condition.
-#}
{% macro exact_sum(expr, scale=9, where=none) -%}
    cast(
        sum(cast({{ expr }} as decimal(18, {{ scale }})))
        {%- if where is not none %} filter (where {{ where }}){% endif %}
        as double
    )
{%- endmacro %}
