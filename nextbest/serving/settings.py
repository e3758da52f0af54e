"""Typed configuration of the serving layer (``NEXTBEST_SERVING_*``); reading it has no side effect."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    """Knobs of the Scorer and the HTTP API.

    Every field can be set from the environment with the ``NEXTBEST_SERVING_`` prefix, e.g.
    ``NEXTBEST_SERVING_REFUSE_STALE=true``.
    """

    model_config = SettingsConfigDict(env_prefix="NEXTBEST_SERVING_", frozen=True)

    online_store: Literal["sqlite", "redis"] | None = Field(
        default=None, description="Online store kind; None reads NEXTBEST_ONLINE_STORE (default sqlite)."
    )
    model_path: Path | None = Field(
        default=None, description="A model bundle directory; None serves the latest bundle in models_dir."
    )
    refuse_stale: bool = Field(
        default=False,
        description="Refuse (503) a ranking whose features are older than their view's ttl, instead of "
        "only reporting the staleness.",
    )
    as_of: datetime | None = Field(
        default=None,
        description="Judge staleness at this (tz-aware) time instead of the wall clock, e.g. when "
        "replaying a historical dataset. None = now.",
    )
    product_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Keep the catalogue's product features in memory this long (one online read of every "
        "product per period instead of one per request); they change only when the store is materialized. "
        "0 = read them on every request.",
    )
    default_k: int = Field(default=7, ge=1, le=1000, description="Products returned when k is not given.")
    max_k: int = Field(default=100, ge=1, le=1000, description="Largest k a request may ask for.")
    max_batch: int = Field(default=100, ge=1, description="Most customers one /rank/batch request may hold.")


def get_serving_settings() -> ServingSettings:
    """Serving settings read from the environment now (not cached)."""
    return ServingSettings()
