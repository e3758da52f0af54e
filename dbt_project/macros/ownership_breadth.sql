{#-
  How many products a customer owns, on a log2 scale: 0, 1, 2-3, 4-7, 8-15 ... (the breadth the product
  adoption rates are conditioned on: int_candidates_eligible, int_product_adoptions_counted).
-#}
{% macro ownership_breadth(count_products_owned) -%}
    cast(
        case when {{ count_products_owned }} = 0 then 0 else floor(log2({{ count_products_owned }})) + 1 end
        as integer
    )
{%- endmacro %}
