"""Online serving of the ranker: Scorer (feature store -> candidates -> ranked products), HTTP API, CLI.

``serving`` may import ``training`` and ``features``; nothing imports ``serving``.
"""

from nextbest.serving.scorer import (
    InvalidRequestError,
    OnlineStoreUnavailableError,
    RankedProduct,
    Ranking,
    Scorer,
    ServingError,
    StaleFeaturesError,
    UnknownCustomerError,
    UnknownProductError,
)
from nextbest.serving.settings import ServingSettings

__all__ = [
    "InvalidRequestError",
    "OnlineStoreUnavailableError",
    "RankedProduct",
    "Ranking",
    "Scorer",
    "ServingError",
    "ServingSettings",
    "StaleFeaturesError",
    "UnknownCustomerError",
    "UnknownProductError",
]
