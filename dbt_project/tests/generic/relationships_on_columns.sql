{#-
  Fails with every row whose combination of columns has no row in `to` with the same values (a composite
  foreign key). With sample_column, both sides keep only customer_sample(sample_column), so that the check
  stays cheap on candidate-grain models.
-#}
{% test relationships_on_columns(model, to, columns, sample_column=none) %}
with
child as (
    select {{ columns | join(', ') }} from {{ model }}
    {% if sample_column %}where {{ customer_sample(sample_column) }}{% endif %}
),

parent as (
    select {{ columns | join(', ') }} from {{ to }}
    {% if sample_column %}where {{ customer_sample(sample_column) }}{% endif %}
),

final as (
    select * from child
    anti join parent
        using ({{ columns | join(', ') }})
)

select * from final
{% endtest %}
