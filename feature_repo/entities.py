"""Entities: ``customer`` (join key customer_id) and ``product`` (join key product_id)."""

from nextbest.features.repo import cli_definitions

customer = cli_definitions().entity("customer")
product = cli_definitions().entity("product")
