"""What a ranking request returns: one ``Ranking`` per customer, its ``RankedProduct`` rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from nextbest.features.staleness import ViewStaleness, stale_views

NO_CANDIDATE_REASON = (
    "no candidate: the customer owns, or is not eligible for, every requested product at its latest snapshot"
)


@dataclass(frozen=True)
class RankedProduct:
    """One ranked candidate.

    Attributes:
        product_id: the product.
        rank: 1 = best.
        score: raw ranker score (unbounded; higher ranks first).
        probability: calibrated adoption probability in [0, 1] within the label horizon (None when
            the bundle has no calibrators).
    """

    product_id: str
    rank: int
    score: float
    probability: float | None


@dataclass(frozen=True)
class Ranking:
    """The answer for one customer.

    Attributes:
        customer_id: the customer.
        snapshot_at: event timestamp (UTC) of the customer's latest online snapshot.
        products: top-k candidates, best first (empty when there is no candidate; see ``reason``).
        reason: why ``products`` is empty, else None.
        n_candidates: candidates scored before the top-k cut.
        staleness: one entry per feature view (age of the served values vs the view's ttl).
        timings_ms: wall milliseconds of ``fetch``, ``filter``, ``predict``, ``calibrate``, ``total``.
    """

    customer_id: str
    snapshot_at: datetime
    products: list[RankedProduct]
    reason: str | None
    n_candidates: int
    staleness: list[ViewStaleness]
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def stale_views(self) -> list[str]:
        """Names of the views whose served values are stale."""
        return stale_views(self.staleness)


def epoch_to_utc(seconds: int) -> datetime:
    """A tz-aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(int(seconds), tz=UTC)
