"""Where the dbt build leaves what the other stages read: one parquet file per mart, and the manifest.

The one place mart file paths are built; model names are the dbt models' (``dbt_project/models/marts``).
"""

from __future__ import annotations

from pathlib import Path

from nextbest.settings import Settings

DIM_PRODUCTS = "dim_products"
"""The product catalogue: one row per product."""

FCT_CANDIDATES = "fct_candidates"
"""One row per customer x candidate product x snapshot (latest snapshot included)."""

FCT_RANKING_LABELS = "fct_ranking_labels"
"""One row per customer x candidate product x labelled snapshot, with its 0/1 label."""

MART_MODELS: tuple[str, ...] = (
    DIM_PRODUCTS,
    FCT_CANDIDATES,
    FCT_RANKING_LABELS,
    "feat_customer_monthly",
    "feat_product_monthly",
    "feat_customer_product_monthly",
    "feat_customer_product_monthly_packed",
)
"""Every mart the build summary counts."""


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
    return settings.warehouse_dir / "dbt_target"


def manifest_path(settings: Settings) -> Path:
    """The compiled dbt manifest of the last build."""
    return dbt_target_dir(settings) / "manifest.json"
