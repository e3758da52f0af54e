"""Entities: ``customer`` (join key customer_id) and ``product`` (product_id)."""

from nextbest.features.definitions import build_entities

_entities = build_entities()
customer = _entities["customer"]
product = _entities["product"]
