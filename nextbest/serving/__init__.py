"""Serving the ranker: errors and result types, the candidate rule, the Scorer (feature store ->
candidates -> ranked products), batch scoring, the HTTP API and the CLI.

``nextbest.serving`` may import ``training`` and ``features``; nothing imports it but the root command.
"""

from typing import TYPE_CHECKING

from nextbest.serving.errors import (
    InvalidRequestError,
    OnlineStoreUnavailableError,
    ServingError,
    StaleFeaturesError,
    UnknownCustomerError,
    UnknownProductError,
)
from nextbest.serving.results import RankedProduct, Ranking
from nextbest.settings import ServingSettings

if TYPE_CHECKING:
    from nextbest.serving.scorer import RankQuery, Scorer


def __getattr__(name: str) -> object:
    """``Scorer`` and ``RankQuery`` on first use: the scorer imports Feast and LightGBM (~4 s), which
    every ``nextbest`` command paid at start-up through the serving CLI's import of this package."""
    if name in ("RankQuery", "Scorer"):
        from nextbest.serving import scorer

        return getattr(scorer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
