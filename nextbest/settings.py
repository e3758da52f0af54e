"""Typed configuration. Reading settings has no side effect: no directory is created here."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
FEATURE_REPO_DIR = PROJECT_ROOT / "feature_repo"


class Settings(BaseSettings):
    """Where nextbest keeps its state, and the knobs of the build.

    Every field can be set from the environment with the ``NEXTBEST_`` prefix,
    e.g. ``NEXTBEST_HOME=/data/nextbest``.
    """

    model_config = SettingsConfigDict(env_prefix="NEXTBEST_", frozen=True)

    home: Path = Field(default=PROJECT_ROOT / ".nextbest", description="Root of all generated state.")
    dbt_threads: int = Field(default=2, ge=1)
    dbt_memory_limit: str = Field(default="6GB", description="DuckDB memory_limit for dbt builds.")

    @cached_property
    def raw_dir(self) -> Path:
        """The ingested, validated dataset in the raw contract."""
        return self.home / "raw"

    @cached_property
    def sources_dir(self) -> Path:
        """Datasets produced by the shipped loaders before ingest (synthetic, completejourney)."""
        return self.home / "sources"

    @cached_property
    def warehouse_dir(self) -> Path:
        """dbt's DuckDB file and the external parquet marts."""
        return self.home / "warehouse"

    @cached_property
    def marts_dir(self) -> Path:
        """External parquet written by dbt, one file per model."""
        return self.warehouse_dir / "marts"

    @cached_property
    def feast_dir(self) -> Path:
        """Feast registry and sqlite online store."""
        return self.home / "feast"

    @cached_property
    def models_dir(self) -> Path:
        """Versioned model bundles."""
        return self.home / "models"


def get_settings() -> Settings:
    """Settings read from the environment now (not cached: tests change NEXTBEST_HOME)."""
    return Settings()
