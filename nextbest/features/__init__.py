"""nextbest's Feast feature store, generated from the dbt feature marts' manifest."""
