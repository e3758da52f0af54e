"""The Feast data source of a parquet mart, for the offline store of the engine the settings choose.

``duckdb`` (default): a ``FileSource`` read by Feast's DuckDB offline store. ``spark``: a ``SparkSource``
over the same parquet file, read by Feast's Spark offline store (``repo_config``'s ``spark_conf``). The
marts are the contract either way: one parquet file per mart, whichever engine wrote it.
"""

from __future__ import annotations

from pathlib import Path

from feast import FileSource
from feast.data_source import DataSource

from nextbest.columns import EVENT_TIMESTAMP
from nextbest.settings import Engine


def parquet_source(
    name: str,
    path: Path,
    description: str,
    tags: dict[str, str],
    engine: Engine = "duckdb",
    created_timestamp_column: str = "",
) -> DataSource:
    """The data source of the parquet mart at ``path`` (absolute), timestamped by ``event_timestamp``."""
    if engine == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        return SparkSource(
            name=name,
            path=str(path),
            file_format="parquet",
            timestamp_field=EVENT_TIMESTAMP,
            created_timestamp_column=created_timestamp_column,
            description=description,
            tags=tags,
        )
    return FileSource(
        name=name,
        path=str(path),
        timestamp_field=EVENT_TIMESTAMP,
        created_timestamp_column=created_timestamp_column,
        description=description,
        tags=tags,
    )
