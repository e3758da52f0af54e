"""nextbest: one LambdaMART ranker for next-best-product, fed by dbt features through Feast."""

__version__ = "0.1.0"
