"""The errors a ranking request can end with; ``nextbest.serving.api`` maps each to one HTTP status."""

from __future__ import annotations

from nextbest.errors import UserError
from nextbest.features.staleness import ViewStaleness


class ServingError(UserError):
    """Base class of the errors a ranking request can end with."""


class UnknownCustomerError(ServingError, LookupError):
    """The customer has no ``customer_monthly`` row in the online store (HTTP 404)."""


class InvalidRequestError(ServingError, ValueError):
    """A request the scorer cannot answer as asked, e.g. k out of range (HTTP 422)."""


class UnknownProductError(InvalidRequestError):
    """A requested product is not in the catalogue (HTTP 422)."""


class OnlineStoreUnavailableError(ServingError):
    """The online store could not be read (down, timed out, corrupted); retry after ``retry_after_s``
    seconds (HTTP 503 with Retry-After). Raised from
    ``nextbest.features.online.OnlineStoreUnavailableError``."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StaleFeaturesError(ServingError):
    """The served features are older than their view's ttl and ``refuse_stale`` is on (HTTP 503)."""

    def __init__(self, message: str, staleness: list[ViewStaleness]) -> None:
        super().__init__(message)
        self.staleness = staleness


class NoModelError(ServingError, FileNotFoundError):
    """No model bundle to serve."""


class FeatureStoreNotAppliedError(ServingError):
    """The feature store has no registered FeatureService / views to serve from (``nextbest features apply``
    or ``nextbest build`` has not run since the registry was removed)."""
