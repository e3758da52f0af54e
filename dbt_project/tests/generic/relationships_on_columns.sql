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

-- not exists rather than DuckDB's `anti join`: the same on Spark
final as (
    select * from child
    where not exists (
        select 1 from parent
        where {% for column in columns -%}
            parent.{{ column }} = child.{{ column }}{{ ' and ' if not loop.last }}
        {%- endfor %}
    )
)

select * from final
{% endtest %}
