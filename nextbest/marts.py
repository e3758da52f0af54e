"""Where the dbt build leaves what the other stages read: one parquet file per mart, the manifest, and
the build's record (``build.json``: id, dbt vars, dataset, times).

The one place mart file paths are built; model names are the dbt models' (``dbt_project/models/marts``).
Every path is inside ``settings.build_dir``: the live build's directory (or a pinned build's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nextbest.settings import Settings

BUILD_RECORD_FILE = "build.json"
"""The record of a build, in its build directory."""

DIM_PRODUCTS = "dim_products"
"""The product catalogue: one row per product."""

FCT_CANDIDATES = "fct_candidates"
"""One row per customer x candidate product x snapshot (latest snapshot included)."""

FCT_RANKING_LABELS = "fct_ranking_labels"
"""One row per customer x candidate product x labelled snapshot, with its 0/1 label."""

FCT_CANDIDATE_RETRIEVAL_RECALL = "fct_candidate_retrieval_recall"
"""One row per ranking group (customer x labelled snapshot): what a large catalogue's candidate retrieval
stage kept of the eligible candidates and of their adoptions; no row with the stage off."""

MART_MODELS: tuple[str, ...] = (
    DIM_PRODUCTS,
    FCT_CANDIDATES,
    FCT_RANKING_LABELS,
    FCT_CANDIDATE_RETRIEVAL_RECALL,
    "feat_customer_monthly",
    "feat_product_monthly",
    "feat_customer_product_monthly_packed",
)
"""Every mart file the build summary counts (feat_customer_product_monthly is a view, packed into
feat_customer_product_monthly_packed)."""


def mart_file(marts_dir: Path, model: str) -> Path:
    """The parquet file dbt writes for ``model`` in ``marts_dir``."""
    return marts_dir / f"{model}.parquet"


def mart_path(settings: Settings, model: str) -> Path:
    """The parquet file of ``model`` in ``settings``' warehouse."""
    return mart_file(settings.marts_dir, model)


def existing_mart(settings: Settings, model: str) -> Path:
    """``mart_path`` of ``model``; FileNotFoundError with a hint when the build has not written it."""
    path = mart_path(settings, model)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `nextbest build` first")
    return path


def dbt_target_dir(settings: Settings) -> Path:
    """Where ``run_dbt`` asks dbt to write its artifacts (manifest, run results)."""
    return settings.build_dir / "dbt_target"


def manifest_path(settings: Settings) -> Path:
    """The compiled dbt manifest of the last build."""
    return dbt_target_dir(settings) / "manifest.json"


class BuildRecord(BaseModel):
    """What one build was: written beside its marts when it starts, completed when dbt and its tests pass.

    Attributes:
        build_id: the build's id (its directory name): UTC start time and a short random suffix.
        dbt_vars: the vars dbt ran with: ``horizon_months``, ``activity_lookback_months``,
            ``burn_in_months``, ``observed_until`` (what a model bundle must have been trained on).
        dataset: the ingested dataset's name.
        started_at, finished_at: UTC times, ISO 8601; ``finished_at`` is None until the build passed.
        pid: the process that ran the build.
    """

    model_config = ConfigDict(frozen=True)

    build_id: str
    dbt_vars: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = None
    started_at: str
    finished_at: str | None = None
    pid: int | None = None

    @property
    def succeeded(self) -> bool:
        """True once ``dbt build`` and its tests passed."""
        return self.finished_at is not None

    def write(self, build_dir: Path) -> None:
        """Save the record in ``build_dir`` (temporary file, then renamed into place)."""
        path = build_dir / BUILD_RECORD_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def read(cls, build_dir: Path) -> BuildRecord | None:
        """The record in ``build_dir``, None when there is none."""
        path = build_dir / BUILD_RECORD_FILE
        if not path.is_file():
            return None
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))


def build_record(settings: Settings) -> BuildRecord | None:
    """The record of the build ``settings`` read (the live one unless pinned); None for the flat layout."""
    if settings.current_build_id is None:
        return None
    return BuildRecord.read(settings.build_dir)
