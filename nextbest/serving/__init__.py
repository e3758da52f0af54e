"""Serving the ranker: errors and result types, the candidate rule, the Scorer (feature store ->
candidates -> ranked products), batch scoring, the HTTP API and the CLI.

``nextbest.serving`` may import ``training`` and ``features``; nothing imports it but the root command.
"""

from nextbest.serving.errors import (
    InvalidRequestError,
    OnlineStoreUnavailableError,
    ServingError,
    StaleFeaturesError,
    UnknownCustomerError,
    UnknownProductError,
)
from nextbest.serving.results import RankedProduct, Ranking
from nextbest.serving.scorer import RankQuery, Scorer
from nextbest.settings import ServingSettings

__all__ = [
    "InvalidRequestError",
    "OnlineStoreUnavailableError",
    "RankedProduct",
    "RankQuery",
    "Ranking",
    "Scorer",
    "ServingError",
    "ServingSettings",
    "StaleFeaturesError",
    "UnknownCustomerError",
    "UnknownProductError",
]
