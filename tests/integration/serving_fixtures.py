"""A small served deployment for the serving tests and benchmark: synthetic data -> dbt -> Feast -> bundle.

``build_deployment`` runs the real pipeline (generate, ingest, dbt build, Feast apply + materialize to
sqlite) and writes a model bundle: through ``nextbest.training.train.train`` when that module exists, else a
small ranker + calibrators fitted here with the training core modules on Feast historical features.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from nextbest.settings import Settings


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 15.0) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


@dataclass
class RedisServer:
    """A throw-away ``redis-server`` on a free loopback port (no persistence), startable and stoppable."""

    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def fit_small_bundle(settings: Settings) -> Path:
    """Fit a small ranker + calibrators on Feast historical features of the labelled snapshots; save it.

    The last labelled snapshot is the validation split (early stopping and calibration).
    """
    from nextbest.features.definitions import FEATURE_SERVICE_NAME
    from nextbest.features.retrieval import historical_features, service_feature_views
    from nextbest.features.store import get_store
    from nextbest.training.artifacts import ModelBundle, save_bundle
    from nextbest.training.calibration import fit_calibrators
    from nextbest.training.config import RankerConfig
    from nextbest.training.ranker import fit_ranker, prepare_groups

    labels = duckdb.sql(
        f"select customer_id, product_id, event_timestamp, label "
        f"from read_parquet('{settings.marts_dir / 'fct_ranking_labels.parquet'}')"
    ).df()
    store = get_store(settings, "sqlite")
    frame = historical_features(store, labels, FEATURE_SERVICE_NAME)
    features = [f for fs in service_feature_views(store, FEATURE_SERVICE_NAME).values() for f in fs]
    feature_cols = [*features, "product_id"]
    last = frame["event_timestamp"].max()
    train_df, valid_df = frame[frame["event_timestamp"] < last], frame[frame["event_timestamp"] == last]
    train = prepare_groups(train_df, feature_cols)
    valid = prepare_groups(valid_df, feature_cols, categories=train.categories)
    ranker = fit_ranker(train, valid, RankerConfig(n_estimators=60, early_stopping_rounds=20, n_jobs=1))
    scored = valid_df.assign(score=ranker.score(valid_df))
    calibrators = fit_calibrators(scored, feature_cols=["income", "tenure_months"], min_positives=15)
    bundle = ModelBundle(
        ranker=ranker,
        calibrators=calibrators,
        feature_service_name=FEATURE_SERVICE_NAME,
        feature_service_version=int(FEATURE_SERVICE_NAME.rsplit("_v", 1)[1]),
        data_range={"train_end": str(last)},
    )
    return save_bundle(bundle, settings.models_dir)


def build_deployment(home: Path, customers: int = 1500, months: int = 8, seed: int = 5) -> Settings:
    """Generate, ingest, build, apply, materialize (sqlite) and fit a bundle under ``home``."""
    from nextbest.features.store import apply_definitions, materialize
    from nextbest.ingest.store import ingest_directory
    from nextbest.ingest.synthetic import generate_synthetic
    from nextbest.pipeline import build_warehouse

    settings = Settings(home=home)
    source = home / "source"
    generate_synthetic(source, customers=customers, months=months, seed=seed, with_oracle=False)
    ingest_directory(source, settings.raw_dir)
    build_warehouse(settings, quiet=True)
    apply_definitions(settings, "sqlite")
    materialize(settings, "sqlite", progress=False)
    fit_small_bundle(settings)
    return settings


def latest_candidates(settings: Settings) -> pd.DataFrame:
    """``fct_candidates`` rows at the latest snapshot (customer_id, product_id, event_timestamp)."""
    path = settings.marts_dir / "fct_candidates.parquet"
    return duckdb.sql(
        f"select customer_id, product_id, event_timestamp from read_parquet('{path}') "
        f"where snapshot_on = (select max(snapshot_on) from read_parquet('{path}'))"
    ).df()
