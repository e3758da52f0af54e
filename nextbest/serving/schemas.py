"""Request and response bodies of the HTTP API (pydantic), with the examples shown in the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from nextbest.features.staleness import ViewStaleness
from nextbest.serving.results import Ranking


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

    customer_id: str = Field(min_length=1, max_length=200, description="The customer to rank products for.")
    k: int = Field(default=7, ge=1, le=1000, description="How many products to return (best first).")
    product_ids: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=10_000,
        description="Rank only these products (still only the customer's candidates); default: all.",
    )


class BatchRankRequest(BaseModel):
    """Rank the candidate products of several customers."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"customer_ids": ["C0000001", "C0000002"], "k": 3}]}
    )

    customer_ids: list[str] = Field(min_length=1, max_length=1000, description="Customers to rank for.")
    k: int = Field(default=7, ge=1, le=1000, description="Products per customer.")


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
    """How far the online store is loaded for one feature view."""

    view: str
    offline_max_ts: datetime | None
    online_until: datetime | None
    online_is_current: bool


class HealthResponse(BaseModel):
    """What is served and whether the online store answers."""

    status: str = Field(description="`ok`, or `degraded` when the online store does not answer.")
    model_version: str
    feature_service: str
    online_store: str = Field(description="sqlite | redis")
    online_store_reachable: bool
    views: list[ViewFreshness]


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
