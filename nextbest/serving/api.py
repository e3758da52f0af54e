"""The HTTP API: ``create_app(settings)`` -> a FastAPI app with one Scorer, built at start-up.

Routes only parse and delegate: ``/rank`` and ``/rank/batch`` to a ``MicroBatcher`` (concurrent requests
are scored together by ``Scorer.rank_many``), ``/ready`` to the state a ``ReadinessMonitor`` refreshes in
the background, ``/health`` (liveness) and ``/products`` to what was loaded at start-up. Errors map to
status codes in one place: unknown customer -> 404, invalid request -> 422 (the body is never echoed),
body too large -> 413, online store down, timed out or corrupted, or stale features refused -> 503 (with
``Retry-After``). ``app_from_env`` is the factory uvicorn's workers import (``nextbest serve --workers``).

Operating it: one middleware (``nextbest.serving.gate``) in front of every route, also of routers
mounted later, checks the API key and its scope and rate (``nextbest.serving.auth``), counts and times
the request (``nextbest.serving.metrics``, ``GET /metrics``) and writes its JSON access-log line
(``nextbest.serving.logs``); ranking routes add what they answered, which also goes to the decisions log
when ``serving.decisions_log_dir`` is set (``nextbest.serving.decisions``).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from nextbest.serving.auth import KeyRing, TokenBuckets, load_keyring
from nextbest.serving.batching import MicroBatcher
from nextbest.serving.decisions import Decision, DecisionsLog
from nextbest.serving.errors import (
    InvalidRequestError,
    OnlineStoreUnavailableError,
    ServingError,
    StaleFeaturesError,
    UnknownCustomerError,
)
from nextbest.serving.gate import CONTEXT_KEY, Gate
from nextbest.serving.limits import BodySizeLimit, validation_detail
from nextbest.serving.logs import AccessLog, RequestContext
from nextbest.serving.metrics import ServingMetrics, TimedReader, mark_worker_dead
from nextbest.serving.readiness import ReadinessMonitor
from nextbest.serving.results import Ranking
from nextbest.serving.schemas import (
    BatchItem,
    BatchRankRequest,
    BatchRankResponse,
    HealthResponse,
    ProductOut,
    RankRequest,
    RankResponse,
    ReadyResponse,
    error_responses,
)
from nextbest.serving.scorer import RankQuery, Scorer
from nextbest.serving.task_routes import load_into as load_task_scorers
from nextbest.serving.task_routes import router as task_router
from nextbest.settings import ServingSettings, Settings, get_settings

ERROR_STATUS: dict[type[Exception], int] = {
    UnknownCustomerError: 404,
    InvalidRequestError: 422,
    OnlineStoreUnavailableError: 503,
    StaleFeaturesError: 503,
}
ERROR_RESPONSES = error_responses(
    "Unknown customer (no features in the online store).", "Malformed body, k out of range or unknown product"
)


async def get_scorer(request: Request) -> Scorer:
    """The app's Scorer (built once at start-up; async: no thread-pool hop per request)."""
    return request.app.state.scorer


async def get_batcher(request: Request) -> MicroBatcher:
    """The app's MicroBatcher (started at start-up)."""
    return request.app.state.batcher


ScorerDep = Annotated[Scorer, Depends(get_scorer)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]


def record(request: Request, scorer: Scorer, rankings: list[Ranking], restricted: bool = False) -> None:
    """What a ranking route answered: into the request's log line, the candidates histogram and, when
    enabled, the decisions log (buffered; written off the request path)."""
    ctx: RequestContext = request.scope[CONTEXT_KEY]
    ctx.rankings, ctx.model_version = rankings, scorer.model_version
    if request.app.state.metrics is not None:
        request.app.state.metrics.observe_candidates([r.n_candidates for r in rankings])
    decisions: DecisionsLog | None = request.app.state.decisions
    if decisions is not None and rankings:
        decision = Decision(ctx.request_id, ctx.key_id, scorer.model_version, scorer.service.name, restricted)
        decisions.append(rankings, decision)


def create_app(
    settings: Settings,
    serving: ServingSettings | None = None,
    scorer: Scorer | None = None,
    keyring: KeyRing | None = None,
) -> FastAPI:
    """The API over ``settings``' feature store and model bundle (loaded once, at start-up; ``scorer``:
    one already loaded, e.g. by ``nextbest serve``'s check before uvicorn starts; ``keyring``: the API
    keys, else read from the settings now, so a bad key file fails here)."""
    serving = serving or settings.serving
    loaded = scorer
    keyring = keyring if keyring is not None else load_keyring(settings, serving)
    metrics = ServingMetrics()
    access_log = AccessLog(serving) if serving.access_log else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scorer = loaded or Scorer(settings, serving)
        if serving.metrics:
            scorer.reader = TimedReader(scorer.reader, metrics)  # online reads timed, failures counted
            metrics.set_model(scorer.model_version, scorer.service.name)
        app.state.scorer = scorer
        app.state.metrics = metrics if serving.metrics else None
        app.state.decisions = None
        if serving.decisions_log_dir is not None:
            app.state.decisions = DecisionsLog(
                serving.decisions_log_dir,
                serving.decisions_flush_rows,
                serving.decisions_flush_s,
                on_drop=metrics.decisions_dropped.inc,
            )
            app.state.decisions.start()
        if access_log is not None:
            access_log.start()
        app.state.products = products_of(scorer)
        load_task_scorers(app, settings, scorer, serving)
        app.state.batcher = MicroBatcher(scorer, serving.max_micro_batch)
        app.state.batcher.start()
        app.state.readiness = ReadinessMonitor(scorer, serving.ready_refresh_s)
        app.state.readiness.start()
        try:
            yield
        finally:
            app.state.readiness.stop()
            await app.state.batcher.close()
            if app.state.decisions is not None:
                app.state.decisions.close()
            if access_log is not None:
                access_log.stop()
            mark_worker_dead()

    app = FastAPI(
        title="nextbest",
        summary="Next best products of a customer: one LambdaMART ranker over Feast online features.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=serving.max_body_bytes)
    app.add_middleware(  # added last: outermost, so refused and failed requests are counted and logged too
        Gate,
        router_app=app,
        keyring=keyring,
        buckets=TokenBuckets(serving.rate_limit_per_s, serving.rate_limit_burst),
        metrics=metrics if serving.metrics else None,
        access_log=access_log,
        open_routes=serving.open_routes,
    )
    for error, code in ERROR_STATUS.items():
        app.add_exception_handler(error, _handler(code))
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.include_router(task_router)

    @app.post("/rank", response_model=RankResponse, responses=ERROR_RESPONSES, tags=["ranking"])
    async def rank(request: Request, body: RankRequest, scorer: ScorerDep, batcher: BatcherDep) -> Response:
        """The customer's top-k candidate products with calibrated probabilities (best first)."""
        result = await batcher.rank(RankQuery(body.customer_id, body.k, body.product_ids))
        if isinstance(result, ServingError):
            raise result
        record(request, scorer, [result], restricted=body.product_ids is not None)
        return _json(RankResponse.of(result, scorer.model_version, scorer.service.name))

    @app.post("/rank/batch", response_model=BatchRankResponse, responses=ERROR_RESPONSES, tags=["ranking"])
    async def rank_batch(
        request: Request, body: BatchRankRequest, scorer: ScorerDep, batcher: BatcherDep
    ) -> Response:
        """Rankings of several customers; an unknown customer gets an error item, not a failed batch."""
        if len(body.customer_ids) > scorer.serving.max_batch:
            raise InvalidRequestError(f"at most {scorer.serving.max_batch} customers per batch")
        results = await batcher.rank_many([RankQuery(c, body.k) for c in body.customer_ids])
        items = [_batch_item(scorer, c, r) for c, r in zip(body.customer_ids, results, strict=True)]
        record(request, scorer, [r for r in results if isinstance(r, Ranking)])
        return _json(BatchRankResponse(results=items))

    @app.get("/health", response_model=HealthResponse, tags=["service"])
    async def health(scorer: ScorerDep) -> HealthResponse:
        """Liveness: the process answers and has a model loaded (no store access; see /ready)."""
        return HealthResponse(
            status="ok", model_version=scorer.model_version, feature_service=scorer.service.name
        )

    @app.get(
        "/ready",
        response_model=ReadyResponse,
        responses={503: {"model": ReadyResponse, "description": "Not ready (see `reason`)."}},
        tags=["service"],
    )
    async def ready(request: Request, scorer: ScorerDep) -> JSONResponse:
        """Readiness: bundle loaded, online store reachable and holding every view's latest snapshot
        (the last background check; see ``ready_refresh_s``). 200 when ready, else 503."""
        body = ReadyResponse.of(request.app.state.readiness.state, scorer)
        return JSONResponse(status_code=200 if body.ready else 503, content=body.model_dump(mode="json"))

    @app.get("/products", response_model=list[ProductOut], tags=["service"])
    async def products(request: Request) -> list[ProductOut]:
        """The product catalogue."""
        return request.app.state.products

    @app.get("/metrics", tags=["service"], response_class=Response)
    async def metrics_route(request: Request) -> Response:
        """Prometheus metrics (text exposition format; scope ``admin`` when keys are configured)."""
        if not serving.metrics:
            return JSONResponse(status_code=404, content={"detail": "metrics are off (serving.metrics)"})
        state = request.app.state.readiness.state
        metrics.set_snapshot_ages({v.view: v.online_ts for v in state.views})
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)

    return app


def app_from_env() -> FastAPI:
    """``create_app`` over the settings read from the environment: the factory each uvicorn worker
    process imports (``nextbest serve --workers N``)."""
    return create_app(get_settings())


def products_of(scorer: Scorer) -> list[ProductOut]:
    """The catalogue as response rows (built once)."""
    frame = scorer.products.astype(object).where(scorer.products.notna(), None)
    return [ProductOut(**row) for row in frame.to_dict(orient="records")]


def _batch_item(scorer: Scorer, customer_id: str, result: Any) -> BatchItem:
    """One batch entry: an unknown customer becomes an error item; other errors fail the batch."""
    if isinstance(result, UnknownCustomerError):
        return BatchItem(customer_id=customer_id, error=str(result))
    if isinstance(result, ServingError):
        raise result
    return BatchItem(
        customer_id=customer_id, ranking=RankResponse.of(result, scorer.model_version, scorer.service.name)
    )


def _json(body: BaseModel) -> Response:
    """``body`` serialised once by pydantic (FastAPI would validate a returned model again against the
    route's ``response_model``, which stays for the OpenAPI schema)."""
    return Response(content=body.model_dump_json(), media_type="application/json")


def _handler(status_code: int):  # noqa: ANN202 - a Starlette exception handler
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        headers = None
        if isinstance(exc, OnlineStoreUnavailableError):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        return JSONResponse(status_code=status_code, content={"detail": str(exc)}, headers=headers)

    return handle


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each problem's location and rule, without echoing the input."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse(status_code=422, content={"detail": validation_detail(errors)})
