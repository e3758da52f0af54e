"""Behavioural tests of a trained ranker (Made-With-ML style: invariance and edge cases).

A small synthetic bank is generated, built by dbt, applied to Feast and trained once per session;
the tests then rank the candidates of the latest (unlabelled) snapshot, exactly what serving does.
"""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID, RANK
from nextbest.features.store import apply_definitions
from nextbest.ingest.store import ingest_directory
from nextbest.ingest.synthetic import generate_synthetic
from nextbest.marts import FCT_CANDIDATES
from nextbest.pipeline import build_warehouse
from nextbest.settings import Settings
from nextbest.training.artifacts import ModelBundle, load_bundle
from nextbest.training.config import TrainingConfig
from nextbest.training.datasets import mart_snapshots, training_frame
from nextbest.training.scoring import rank_candidates
from nextbest.training.train import train

pytestmark = pytest.mark.integration

CONFIG = TrainingConfig.model_validate(
    {
        "name": "behaviour",
        "split": {"max_train_snapshots": 3},
        "ranker": {"n_estimators": 100, "n_jobs": 1, "early_stopping_rounds": 20},
        "baselines": ["popularity"],
        "calibration": {"min_positives": 20},
    }
)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, ModelBundle]:
    """(settings, the saved-and-reloaded bundle) of a ranker trained on 1,500 customers x 8 months."""
    home = tmp_path_factory.mktemp("behaviour")
    settings = Settings(home=home / "nextbest")
    generate_synthetic(home / "src", customers=1500, months=8, seed=7)
    ingest_directory(home / "src", settings.raw_dir)
    build_warehouse(settings, quiet=True)
    apply_definitions(settings)
    result = train(settings, CONFIG)
    return settings, load_bundle(result.bundle_path)


@pytest.fixture(scope="session")
def latest_candidates(trained: tuple[Settings, ModelBundle]) -> pd.DataFrame:
    """Candidates of the latest snapshot (no label yet) with their features: what serving ranks."""
    settings, _ = trained
    latest = mart_snapshots(settings, FCT_CANDIDATES)[-1]
    return training_frame(settings, CONFIG, [latest], mart=FCT_CANDIDATES)


def _owned_at(settings: Settings, day: date) -> pd.DataFrame:
    """(customer_id, product_id) pairs owned on ``day`` according to the raw holdings."""
    return duckdb.execute(
        "select distinct customer_id, product_id from read_parquet(?) "
        "where started_on <= ?::date and (ended_on is null or ?::date < ended_on)",
        [str(settings.raw_dir / "holdings.parquet"), day.isoformat(), day.isoformat()],
    ).df()


def test_an_owned_product_is_never_ranked(
    trained: tuple[Settings, ModelBundle], latest_candidates: pd.DataFrame
) -> None:
    settings, bundle = trained
    latest = mart_snapshots(settings, FCT_CANDIDATES)[-1]
    ranking = rank_candidates(bundle, latest_candidates)
    owned = _owned_at(settings, latest)
    assert len(owned) > 1000 and len(ranking) > 1000
    clash = ranking.merge(owned, on=[CUSTOMER_ID, PRODUCT_ID])
    assert clash.empty, f"owned products ranked:\n{clash.head()}"


def test_rankings_are_complete_and_ordered(bundle_and_frame: tuple[ModelBundle, pd.DataFrame]) -> None:
    bundle, frame = bundle_and_frame
    ranking = rank_candidates(bundle, frame)
    assert len(ranking) == len(frame)
    sizes = ranking.groupby(CUSTOMER_ID)[RANK].agg(["min", "max", "size"])
    assert (sizes["min"] == 1).all() and (sizes["max"] == sizes["size"]).all()
    diffs = ranking.groupby(CUSTOMER_ID)["score"].diff().dropna()
    assert (diffs <= 0).all()
    assert ranking["probability"].between(0, 1).all()


def test_shuffling_candidates_does_not_change_scores_or_ranks(
    bundle_and_frame: tuple[ModelBundle, pd.DataFrame],
) -> None:
    bundle, frame = bundle_and_frame
    expected = rank_candidates(bundle, frame)
    shuffled = frame.sample(frac=1.0, random_state=3)[frame.columns[::-1]]
    assert not shuffled.index.equals(frame.index)
    pd.testing.assert_frame_equal(rank_candidates(bundle, shuffled), expected)


def test_scores_do_not_depend_on_the_customer_id(bundle_and_frame: tuple[ModelBundle, pd.DataFrame]) -> None:
    bundle, frame = bundle_and_frame
    renamed = frame.assign(**{CUSTOMER_ID: "X" + frame[CUSTOMER_ID].astype(str)})
    np.testing.assert_array_equal(bundle.ranker.score(renamed), bundle.ranker.score(frame))


def test_a_customer_without_candidates_gets_an_empty_ranking(
    bundle_and_frame: tuple[ModelBundle, pd.DataFrame],
) -> None:
    bundle, frame = bundle_and_frame
    nobody = frame[frame[CUSTOMER_ID] == "no-such-customer"]
    ranking = rank_candidates(bundle, nobody)
    assert ranking.empty
    assert list(ranking.columns) == [CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID, "score", "probability", RANK]


def test_a_customer_ranked_alone_gets_the_same_ranking(
    bundle_and_frame: tuple[ModelBundle, pd.DataFrame],
) -> None:
    bundle, frame = bundle_and_frame
    everyone = rank_candidates(bundle, frame)
    customer = frame[CUSTOMER_ID].iloc[0]
    alone = rank_candidates(bundle, frame[frame[CUSTOMER_ID] == customer])
    pd.testing.assert_frame_equal(alone, everyone[everyone[CUSTOMER_ID] == customer].reset_index(drop=True))


def test_missing_feature_or_duplicate_candidate_is_an_error(
    bundle_and_frame: tuple[ModelBundle, pd.DataFrame],
) -> None:
    bundle, frame = bundle_and_frame
    with pytest.raises(KeyError, match="tenure_months"):
        rank_candidates(bundle, frame.drop(columns=["tenure_months"]))
    with pytest.raises(ValueError, match="duplicate"):
        rank_candidates(bundle, pd.concat([frame.head(3), frame.head(1)]))


@pytest.fixture(scope="session")
def bundle_and_frame(
    trained: tuple[Settings, ModelBundle], latest_candidates: pd.DataFrame
) -> tuple[ModelBundle, pd.DataFrame]:
    """The bundle and the candidates of 200 customers of the latest snapshot."""
    customers = latest_candidates[CUSTOMER_ID].drop_duplicates().head(200)
    frame = latest_candidates[latest_candidates[CUSTOMER_ID].isin(customers)].reset_index(drop=True)
    return trained[1], frame
