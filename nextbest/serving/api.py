"""The HTTP API: ``create_app(settings)`` -> a FastAPI app with one Scorer, built at start-up.

Routes only parse and delegate to ``nextbest.serving.scorer``; errors map to status codes in one place:
unknown customer -> 404, unknown product -> 422, online store down or stale features refused -> 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from nextbest.features.store import status
from nextbest.serving.errors import (
    InvalidRequestError,
    OnlineStoreUnavailableError,
    StaleFeaturesError,
    UnknownCustomerError,
)
from nextbest.serving.schemas import (
    BatchItem,
    BatchRankRequest,
    BatchRankResponse,
    ErrorResponse,
    HealthResponse,
    ProductOut,
    RankRequest,
    RankResponse,
    ViewFreshness,
)
from nextbest.serving.scorer import Scorer
from nextbest.settings import ServingSettings, Settings

ERROR_STATUS: dict[type[Exception], int] = {
    UnknownCustomerError: 404,
    InvalidRequestError: 422,
    OnlineStoreUnavailableError: 503,
    StaleFeaturesError: 503,
}
ERROR_RESPONSES = {
    404: {"model": ErrorResponse, "description": "Unknown customer (no features in the online store)."},
    422: {"description": "Malformed body, k out of range or unknown product."},
    503: {"model": ErrorResponse, "description": "Online store unreachable, or stale features refused."},
}


def get_scorer(request: Request) -> Scorer:
    """The app's Scorer (built once at start-up)."""
    return request.app.state.scorer


ScorerDep = Annotated[Scorer, Depends(get_scorer)]


def create_app(settings: Settings, serving: ServingSettings | None = None) -> FastAPI:
    """The API over ``settings``' feature store and model bundle (loaded once, at start-up)."""
    serving = serving or settings.serving

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.scorer = Scorer(settings, serving)
        yield

    app = FastAPI(
        title="nextbest",
        summary="Next best products of a customer: one LambdaMART ranker over Feast online features.",
        version="1",
        lifespan=lifespan,
    )
    for error, code in ERROR_STATUS.items():
        app.add_exception_handler(error, _handler(code))

    @app.post("/rank", response_model=RankResponse, responses=ERROR_RESPONSES, tags=["ranking"])
    def rank(body: RankRequest, scorer: ScorerDep) -> RankResponse:
        """The customer's top-k candidate products with calibrated probabilities (best first)."""
        ranking = scorer.rank(body.customer_id, body.k, body.product_ids)
        return RankResponse.of(ranking, scorer.model_version, scorer.service.name)

    @app.post("/rank/batch", response_model=BatchRankResponse, responses=ERROR_RESPONSES, tags=["ranking"])
    def rank_batch(body: BatchRankRequest, scorer: ScorerDep) -> BatchRankResponse:
        """Rankings of several customers; an unknown customer gets an error item, not a failed batch."""
        if len(body.customer_ids) > scorer.serving.max_batch:
            raise InvalidRequestError(f"at most {scorer.serving.max_batch} customers per batch")
        return BatchRankResponse(results=[_batch_item(scorer, c, body.k) for c in body.customer_ids])

    @app.get("/health", response_model=HealthResponse, tags=["service"])
    def health(scorer: ScorerDep) -> HealthResponse:
        """Model version, feature service and how fresh the online store is."""
        reachable = scorer.ping()
        views = [
            ViewFreshness(
                view=v.view,
                offline_max_ts=v.offline_max_ts,
                online_until=v.online_until,
                online_is_current=v.online_is_current,
            )
            for v in status(settings, scorer.serving.online_store)
        ]
        return HealthResponse(
            status="ok" if reachable else "degraded",
            model_version=scorer.model_version,
            feature_service=scorer.service.name,
            online_store=scorer.online_kind,
            online_store_reachable=reachable,
            views=views,
        )

    @app.get("/products", response_model=list[ProductOut], tags=["service"])
    def products(scorer: ScorerDep) -> list[ProductOut]:
        """The product catalogue."""
        frame = scorer.products.astype(object).where(scorer.products.notna(), None)
        return [ProductOut(**row) for row in frame.to_dict(orient="records")]

    return app


def _batch_item(scorer: Scorer, customer_id: str, k: int) -> BatchItem:
    """One batch entry: an unknown customer becomes an error item; other errors fail the batch."""
    try:
        ranking = scorer.rank(customer_id, k)
    except UnknownCustomerError as exc:
        return BatchItem(customer_id=customer_id, error=str(exc))
    return BatchItem(
        customer_id=customer_id, ranking=RankResponse.of(ranking, scorer.model_version, scorer.service.name)
    )


def _handler(status_code: int):  # noqa: ANN202 - a Starlette exception handler
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=status_code, content={"detail": str(exc)})

    return handle
