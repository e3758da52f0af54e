"""The HTTP routes of the tasks: ``POST /score/{task}`` and ``POST /score/{task}/batch``.

One router, mounted by ``nextbest.serving.api.create_app``; the task scorers are loaded at start-up by
``load_into`` (one per trained binary customer or multi-label customer x category task whose bundle
matches the live build, sharing the ranker Scorer's online reader; a task not served answers 404 saying
why, e.g. not trained or trained on another build). A binary task answers the customer's probability
(``TaskScoreResponse``), a customer x category task its categories ranked by probability
(``CategoryRankingResponse``). Routes only parse and delegate to ``nextbest.serving.tasks.TaskScorer``.
The error contract is ``/rank``'s:
unknown task or customer -> 404, invalid body -> 422 (the input is not echoed), online store down, timed
out or unreadable, or stale features refused -> 503 with ``Retry-After`` (the app's handlers).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from nextbest.serving.errors import ServingError, UnknownCustomerError
from nextbest.serving.schemas import Identifier, error_responses
from nextbest.serving.scorer import Scorer
from nextbest.serving.tasks import (
    CategoryRanking,
    TaskScore,
    TaskScorer,
    UnknownServedTaskError,
    load_served_tasks,
)
from nextbest.settings import BATCH_LIMIT, ServingSettings, Settings

TASK_RESPONSES = error_responses("Unknown task (or not trained), or unknown customer.", "Malformed body")


class ScoreRequest(BaseModel):
    """Score one customer for a task."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"customer_id": "C0000001"}]})

    customer_id: Identifier = Field(description="The customer to score.")


class BatchScoreRequest(BaseModel):
    """Score several customers for a task."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"customer_ids": ["C0000001", "C0000002"]}]}
    )

    customer_ids: list[Identifier] = Field(
        min_length=1, max_length=BATCH_LIMIT, description=f"Customers to score (at most {BATCH_LIMIT})."
    )


class TaskScoreResponse(BaseModel):
    """One customer's calibrated probability for a task."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "churn",
                    "customer_id": "C0000001",
                    "probability": 0.031,
                    "score": -3.2,
                    "model_version": "20240705T101500000000Z",
                    "snapshot_at": "2024-07-01T00:00:00Z",
                    "stale_views": [],
                }
            ]
        }
    )

    task: str
    customer_id: str
    probability: float = Field(description="Calibrated probability in [0, 1] within the task's horizon.")
    score: float = Field(description="The classifier's raw score (log-odds, unbounded).")
    model_version: str
    snapshot_at: datetime = Field(description="Event timestamp of the customer's online features.")
    stale_views: list[str] = Field(description="Views whose served values are older than their ttl.")

    @classmethod
    def of(cls, result: TaskScore, model_version: str) -> TaskScoreResponse:
        return cls(
            task=result.task,
            customer_id=result.customer_id,
            probability=result.probability,
            score=result.score,
            model_version=model_version,
            snapshot_at=result.snapshot_at,
            stale_views=[s.view for s in result.staleness if s.is_stale],
        )


class CategoryItem(BaseModel):
    """One category of a customer's ranking."""

    category: str
    probability: float = Field(description="Calibrated probability in [0, 1] of activity in the category "
                                           "within the task's horizon.")
    score: float = Field(description="The classifier's raw score (log-odds, unbounded).")
    rank: int = Field(description="1 = most likely.")


class CategoryRankingResponse(BaseModel):
    """One customer's categories (of the task's population at its latest snapshot), most likely first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "category_propensity",
                    "customer_id": "C0000001",
                    "categories": [{"category": "cards", "probability": 0.12, "score": -1.9, "rank": 1}],
                    "model_version": "20240705T101500000000Z",
                    "snapshot_at": "2024-07-01T00:00:00Z",
                    "stale_views": [],
                }
            ]
        }
    )

    task: str
    customer_id: str
    categories: list[CategoryItem]
    model_version: str
    snapshot_at: datetime = Field(description="Event timestamp of the customer's online features.")
    stale_views: list[str] = Field(description="Views whose served values are older than their ttl.")

    @classmethod
    def of(cls, result: CategoryRanking, model_version: str) -> CategoryRankingResponse:
        return cls(
            task=result.task,
            customer_id=result.customer_id,
            categories=[
                CategoryItem(category=c.category, probability=c.probability, score=c.score, rank=rank)
                for rank, c in enumerate(result.categories, start=1)
            ],
            model_version=model_version,
            snapshot_at=result.snapshot_at,
            stale_views=[s.view for s in result.staleness if s.is_stale],
        )


ScoreResponse = TaskScoreResponse | CategoryRankingResponse


def response_of(result: TaskScore | CategoryRanking, model_version: str) -> ScoreResponse:
    """The response body of a task's answer (a probability, or a ranking of categories)."""
    if isinstance(result, CategoryRanking):
        return CategoryRankingResponse.of(result, model_version)
    return TaskScoreResponse.of(result, model_version)


class BatchScoreItem(BaseModel):
    """One customer of a batch: its score, or why there is none."""

    customer_id: str
    score: ScoreResponse | None = None
    error: str | None = Field(default=None, description="e.g. unknown customer; null when scored.")


class BatchScoreResponse(BaseModel):
    """One item per requested customer, in request order."""

    results: list[BatchScoreItem]


def load_into(app: FastAPI, settings: Settings, scorer: Scorer, serving: ServingSettings) -> None:
    """Load the task scorers at start-up (sharing ``scorer``'s online reader) into ``app.state.tasks``."""
    app.state.tasks = load_served_tasks(settings, scorer.reader, scorer.specs, serving)


def _scorer_of(request: Request, task: str) -> TaskScorer:
    """The task's scorer; 404 naming the served tasks when there is none."""
    try:
        return request.app.state.tasks.get(task)
    except UnknownServedTaskError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc


def _json(body: BaseModel) -> Response:
    return Response(content=body.model_dump_json(), media_type="application/json")


router = APIRouter(tags=["tasks"])


@router.post("/score/{task}", response_model=ScoreResponse, responses=TASK_RESPONSES)
def score(task: str, body: ScoreRequest, request: Request) -> Response:
    """The customer's calibrated probability for ``task`` (e.g. churn within its horizon), or, for a
    customer x category task (e.g. category_propensity), its categories ranked by probability."""
    scorer = _scorer_of(request, task)
    return _json(response_of(scorer.score(body.customer_id), scorer.model_version))


@router.post("/score/{task}/batch", response_model=BatchScoreResponse, responses=TASK_RESPONSES)
def score_batch(task: str, body: BatchScoreRequest, request: Request) -> Response:
    """Scores of several customers; an unknown customer gets an error item, not a failed batch."""
    scorer = _scorer_of(request, task)
    results = scorer.score_many(body.customer_ids)
    items = [_item(scorer, c, r) for c, r in zip(body.customer_ids, results, strict=True)]
    return _json(BatchScoreResponse(results=items))


def _item(
    scorer: TaskScorer, customer_id: str, result: TaskScore | CategoryRanking | ServingError
) -> BatchScoreItem:
    """One batch entry: an unknown customer becomes an error item; other errors fail the batch."""
    if isinstance(result, UnknownCustomerError):
        return BatchScoreItem(customer_id=customer_id, error=str(result))
    if isinstance(result, ServingError):
        raise result
    return BatchScoreItem(customer_id=customer_id, score=response_of(result, scorer.model_version))
