"""Request and response bodies of the HTTP API (pydantic), with the examples shown in the OpenAPI schema.

Requests are strict: ``k`` is a JSON integer in [1, ``K_LIMIT``] (the limit ``ServingSettings.max_k`` is
bounded by), ids are printable strings of at most ``ID_MAX_LENGTH`` characters, a batch holds at most
``BATCH_LIMIT`` customers, unknown fields are refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from nextbest.features.staleness import ViewStaleness
from nextbest.serving.results import Ranking
from nextbest.settings import BATCH_LIMIT, K_LIMIT

if TYPE_CHECKING:
    from nextbest.serving.readiness import Readiness
    from nextbest.serving.scorer import Scorer

ID_MAX_LENGTH = 128
"""Longest customer or product id a request may hold."""

PRODUCT_IDS_LIMIT = 1000
"""Most product ids one /rank request may restrict the ranking to."""


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must be printable text (no control character or lone surrogate)")
    return value


Identifier = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=ID_MAX_LENGTH),
    AfterValidator(_printable),
]
"""A customer or product id: printable text of 1 to ``ID_MAX_LENGTH`` characters."""

K = Annotated[
    int, Field(strict=True, ge=1, le=K_LIMIT, description=f"How many products to return (1..{K_LIMIT}).")
]
"""How many products a ranking returns: a JSON integer (not "3", 3.0 or true) in [1, ``K_LIMIT``]."""


class RankRequest(BaseModel):
    """Rank the candidate products of one customer."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"customer_id": "C0000001", "k": 5},
                {"customer_id": "C0000001", "k": 3, "product_ids": ["credit_card", "isa", "mortgage"]},
            ]
        },
    )

    customer_id: Identifier = Field(description="The customer to rank products for.")
    k: K = 7
    product_ids: list[Identifier] | None = Field(
        default=None,
        min_length=1,
        max_length=PRODUCT_IDS_LIMIT,
        description="Rank only these products (still only the customer's candidates); default: all.",
    )


class BatchRankRequest(BaseModel):
    """Rank the candidate products of several customers."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"customer_ids": ["C0000001", "C0000002"], "k": 3}]}
    )

    customer_ids: list[Identifier] = Field(
        min_length=1, max_length=BATCH_LIMIT, description=f"Customers to rank for (at most {BATCH_LIMIT})."
    )
    k: K = 7


class RankedProductOut(BaseModel):
    """One ranked product."""

    product_id: str
    rank: int = Field(description="1 = best.")
    probability: float | None = Field(
        description="Calibrated probability in [0, 1] of adopting the product within the label horizon."
    )
    score: float = Field(description="Raw ranker score (unbounded; higher ranks first).")


class ViewStalenessOut(BaseModel):
    """Age of the served values of one feature view against its ttl."""

    view: str
    served_at: datetime | None = Field(description="Event timestamp of the (oldest) served value, UTC.")
    age_seconds: float | None
    ttl_seconds: float
    is_missing: bool
    is_stale: bool

    @classmethod
    def of(cls, item: ViewStaleness) -> ViewStalenessOut:
        return cls(
            view=item.view,
            served_at=item.served_ts,
            age_seconds=None if item.age is None else item.age.total_seconds(),
            ttl_seconds=item.ttl.total_seconds(),
            is_missing=item.is_missing,
            is_stale=item.is_stale,
        )


class RankResponse(BaseModel):
    """The ranking of one customer."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "C0000001",
                    "snapshot_at": "2024-07-01T00:00:00Z",
                    "model_version": "20240705T101500000000Z-ranker_v1",
                    "feature_service": "ranker_v1",
                    "products": [
                        {"product_id": "credit_card", "rank": 1, "probability": 0.041, "score": 1.27},
                        {"product_id": "isa", "rank": 2, "probability": 0.017, "score": 0.55},
                    ],
                    "reason": None,
                    "n_candidates": 18,
                    "stale_views": [],
                    "staleness": [],
                }
            ]
        }
    )

    customer_id: str
    snapshot_at: datetime = Field(description="Event timestamp of the customer's latest online snapshot.")
    model_version: str
    feature_service: str
    products: list[RankedProductOut] = Field(description="Best first; empty when there is no candidate.")
    reason: str | None = Field(description="Why `products` is empty, else null.")
    n_candidates: int = Field(description="Candidates scored before the top-k cut.")
    stale_views: list[str] = Field(description="Views whose served values are older than their ttl.")
    staleness: list[ViewStalenessOut]

    @classmethod
    def of(cls, ranking: Ranking, model_version: str, feature_service: str) -> RankResponse:
        return cls(
            customer_id=ranking.customer_id,
            snapshot_at=ranking.snapshot_at,
            model_version=model_version,
            feature_service=feature_service,
            products=[
                RankedProductOut(
                    product_id=p.product_id, rank=p.rank, probability=p.probability, score=p.score
                )
                for p in ranking.products
            ],
            reason=ranking.reason,
            n_candidates=ranking.n_candidates,
            stale_views=ranking.stale_views,
            staleness=[ViewStalenessOut.of(s) for s in ranking.staleness],
        )


class BatchItem(BaseModel):
    """One customer of a batch: its ranking, or why there is none."""

    customer_id: str
    ranking: RankResponse | None = None
    error: str | None = Field(default=None, description="e.g. unknown customer; null when ranked.")


class BatchRankResponse(BaseModel):
    """One item per requested customer, in request order."""

    results: list[BatchItem]


class ViewFreshness(BaseModel):
    """Whether the online store holds one view's latest snapshot."""

    view: str
    offline_max_ts: datetime | None = Field(description="Event timestamp of the mart's latest snapshot.")
    online_ts: datetime | None = Field(description="Event timestamp of that snapshot's probe key online.")
    online_is_current: bool


class HealthResponse(BaseModel):
    """Liveness: the process answers with a model loaded."""

    status: str = Field(description="Always `ok` (a dead process does not answer).")
    model_version: str
    feature_service: str


class ReadyResponse(BaseModel):
    """Readiness: may this instance take traffic (last background check)."""

    ready: bool
    reason: str | None = Field(description="Why not ready; null when ready.")
    model_version: str
    feature_service: str
    online_store: str = Field(description="sqlite | redis")
    online_store_reachable: bool
    checked_at: datetime
    views: list[ViewFreshness]
    retrieval_active: bool | None = Field(
        default=None,
        description="Whether the bundle's retrieval index narrows candidates (null: the bundle has none); "
        "inactive retrieval ranks every candidate and does not make the instance unready.",
    )
    retrieval_reason: str | None = Field(default=None, description="Why retrieval is not active.")

    @classmethod
    def of(cls, state: Readiness, scorer: Scorer) -> ReadyResponse:
        return cls(
            ready=state.ready,
            reason=state.reason,
            model_version=scorer.model_version,
            feature_service=scorer.service.name,
            online_store=scorer.online_kind,
            online_store_reachable=state.online_store_reachable,
            checked_at=state.checked_at,
            retrieval_active=state.retrieval_active,
            retrieval_reason=state.retrieval_reason,
            views=[
                ViewFreshness(
                    view=v.view,
                    offline_max_ts=v.offline_max_ts,
                    online_ts=v.online_ts,
                    online_is_current=v.is_current,
                )
                for v in state.views
            ],
        )


class ProductOut(BaseModel):
    """One product of the catalogue."""

    product_id: str
    product_name: str
    category: str
    min_age: int | None
    max_age: int | None


class ErrorResponse(BaseModel):
    """An error with a message saying what went wrong."""

    detail: str


def error_responses(not_found: str, malformed: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a scoring route: 404 (``not_found``), 413, 422 (``malformed``; the
    input is never echoed) and 503 (the online store), as every scoring route answers them."""
    return {
        404: {"model": ErrorResponse, "description": not_found},
        413: {"model": ErrorResponse, "description": "Request body larger than the configured limit."},
        422: {"description": f"{malformed} (the input is not echoed)."},
        503: {
            "model": ErrorResponse,
            "description": "Online store unreachable, timed out or unreadable, or stale features refused; "
            "retry after the Retry-After header's seconds.",
        },
    }
