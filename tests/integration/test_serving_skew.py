"""Training/serving skew: the online path scores exactly what training's code scores offline.

For customers at the latest snapshot, the Scorer (online store -> candidate rule -> ``score_bundle``)
must return the same candidates as ``fct_candidates`` and the same raw scores and probabilities as
training's ``rank_candidates`` (ranker + calibrators) on Feast historical features at that snapshot.
``score_batch`` (offline features, ``score_bundle``) must agree too, and ``score_bundle``'s float-matrix
encoding must equal LightGBM's own pandas path on the same frame.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.features.definitions import FEATURE_SERVICE_NAME
from nextbest.features.retrieval import historical_features
from nextbest.features.store import get_store
from nextbest.serving.batch import score_batch
from nextbest.serving.scorer import Scorer, candidate_mask
from nextbest.settings import ServingSettings, Settings
from nextbest.training.ranker import build_feature_frame
from nextbest.training.scoring import rank_candidates
from tests.integration.serving_fixtures import build_deployment, latest_candidates

pytestmark = pytest.mark.integration

N_CUSTOMERS = 40
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return build_deployment(tmp_path_factory.mktemp("serving_skew"), customers=1000, months=8, seed=9)


@pytest.fixture(scope="module")
def scorer(deployment: Settings) -> Scorer:
    return Scorer(deployment, ServingSettings(online_store="sqlite"))


@pytest.fixture(scope="module")
def offline(deployment: Settings, scorer: Scorer) -> pd.DataFrame:
    """Training's ranking (``nextbest.training.scoring.rank_candidates``) of sampled
    latest-snapshot customers."""
    candidates = latest_candidates(deployment)
    sample = candidates["customer_id"].drop_duplicates().sort_values().iloc[:: max(1, 1000 // N_CUSTOMERS)]
    rows = candidates[candidates["customer_id"].isin(sample)].reset_index(drop=True)
    frame = historical_features(get_store(deployment, "sqlite"), rows, FEATURE_SERVICE_NAME)
    ranked = rank_candidates(scorer.bundle, frame)
    return frame.merge(ranked, on=["customer_id", "event_timestamp", "product_id"], validate="1:1")


class TestCandidateRule:
    def test_listed_products_of_the_customers_snapshot_are_candidates(self) -> None:
        assert candidate_mask(np.array([True, False, True]), 100, 100).tolist() == [True, False, True]

    def test_a_packed_row_older_than_the_customer_row_lists_nothing(self) -> None:
        assert candidate_mask(np.array([True, True]), 100, 40).tolist() == [False, False]
        assert candidate_mask(np.array([True, True]), 100, 0).tolist() == [False, False]

    def test_nothing_is_a_candidate_of_a_customer_without_a_row(self) -> None:
        assert candidate_mask(np.array([True, True]), 0, 0).tolist() == [False, False]

    def test_online_candidates_equal_fct_candidates(self, scorer: Scorer, offline: pd.DataFrame) -> None:
        for customer, rows in offline.groupby("customer_id"):
            ranking = scorer.rank(str(customer), k=scorer.serving.max_k)
            assert {p.product_id for p in ranking.products} == set(rows["product_id"]), customer


class TestScoresAgree:
    def test_online_scores_equal_offline_scores(self, scorer: Scorer, offline: pd.DataFrame) -> None:
        online = pd.DataFrame(
            [
                (p.product_id, customer, p.score, p.probability)
                for customer in offline["customer_id"].unique()
                for p in scorer.rank(str(customer), k=scorer.serving.max_k).products
            ],
            columns=["product_id", "customer_id", "score_online", "probability_online"],
        )
        merged = offline.merge(online, on=["customer_id", "product_id"], how="outer", validate="1:1")
        assert len(merged) == len(offline) > N_CUSTOMERS
        np.testing.assert_allclose(merged["score_online"], merged["score"], rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(
            merged["probability_online"], merged["probability"], rtol=0, atol=TOLERANCE
        )

    def test_the_matrix_encoding_equals_lightgbms_pandas_path_on_the_same_frame(
        self, scorer: Scorer, offline: pd.DataFrame
    ) -> None:
        ranker, cal = scorer.bundle.ranker, scorer.bundle.calibrators
        frame = build_feature_frame(offline, ranker.feature_cols, ranker.categories)
        pandas_score = ranker.booster.predict(frame, num_iteration=ranker.n_trees)
        np.testing.assert_allclose(offline["score"], pandas_score, rtol=0, atol=TOLERANCE)
        assert cal is not None
        rows = offline.assign(score=pandas_score)
        products = rows["product_id"].astype(str)
        for product, part in rows.groupby(products):
            calibrator = cal.per_product.get(str(product), cal.pooled)
            with_product = calibrator is cal.pooled and cal.product_col in cal.pooled.input_cols
            inputs = cal._inputs(part, with_product=with_product)
            model = calibrator.model
            expected = (
                model.predict(inputs.iloc[:, 0].to_numpy(dtype=float))
                if not hasattr(model, "predict_proba")
                else model.predict_proba(inputs)[:, 1]
            )
            np.testing.assert_allclose(part["probability"], expected, rtol=0, atol=TOLERANCE)

    def test_score_batch_equals_the_online_path(
        self, deployment: Settings, scorer: Scorer, offline: pd.DataFrame, tmp_path
    ) -> None:
        snapshot = (pd.Timestamp(offline["event_timestamp"].max()) - pd.Timedelta(days=1)).date()
        out = tmp_path / "scores.parquet"
        rows = score_batch(snapshot, out, chunk_size=300, settings=deployment, progress=False)
        batch = pd.read_parquet(out)
        assert rows == len(batch) == len(latest_candidates(deployment))
        assert not list(tmp_path.glob(".*.tmp")), "the temporary file must be renamed away"
        mine = batch.merge(offline, on=["customer_id", "product_id"], suffixes=("", "_training"))
        assert len(mine) == len(offline)
        np.testing.assert_allclose(mine["score"], mine["score_training"], rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(mine["probability"], mine["probability_training"], rtol=0, atol=TOLERANCE)
        assert (mine["rank"] == mine["rank_training"]).all()
        first = str(offline["customer_id"].iloc[0])
        online = [p.product_id for p in scorer.rank(first, k=3).products]
        assert (
            batch[batch["customer_id"] == first].sort_values("rank")["product_id"].head(3).tolist() == online
        )

    def test_score_batch_names_the_snapshots_when_one_has_no_candidate(
        self, deployment: Settings, tmp_path
    ) -> None:
        with pytest.raises(ValueError, match="snapshots with candidates"):
            score_batch(date(1999, 1, 31), tmp_path / "x.parquet", settings=deployment, progress=False)
        assert not (tmp_path / "x.parquet").exists()


class TestProductCache:
    """The Scorer keeps product features in memory (``product_cache_seconds``); cached and uncached
    rankings must agree, and a re-read picks up what was materialized since."""

    def test_cached_and_uncached_rankings_agree(self, deployment: Settings, offline: pd.DataFrame) -> None:
        cached = Scorer(deployment, ServingSettings(online_store="sqlite", product_cache_seconds=3600))
        uncached = Scorer(deployment, ServingSettings(online_store="sqlite", product_cache_seconds=0))
        for customer in offline["customer_id"].unique()[:10]:
            a, b = cached.rank(str(customer), k=100), uncached.rank(str(customer), k=100)
            assert a.products == b.products, customer
            assert [(v.view, v.served_ts) for v in a.staleness] == [
                (v.view, v.served_ts) for v in b.staleness
            ]

    def test_new_product_rows_are_seen_after_a_refresh(
        self, deployment: Settings, offline: pd.DataFrame
    ) -> None:
        scorer = Scorer(deployment, ServingSettings(online_store="sqlite", product_cache_seconds=3600))
        customer = str(offline["customer_id"].iloc[0])
        product = str(offline[offline["customer_id"] == customer]["product_id"].iloc[0])
        store = get_store(deployment, "sqlite")
        products = pd.read_parquet(deployment.marts_dir / "feat_product_monthly.parquet")
        original = products[
            (products["product_id"] == product)
            & (products["event_timestamp"] == products["event_timestamp"].max())
        ]

        def served_owners() -> int:
            rows = scorer.fetch(customer)
            return int(rows.columns["count_owners"][rows.columns["product_id"].index(product)])

        before = served_owners()
        try:
            store.write_to_online_store("product_monthly", original.assign(count_owners=before + 1000))
            assert served_owners() == before  # still the cached row
            scorer.refresh_products()
            assert served_owners() == before + 1000
        finally:
            store.write_to_online_store("product_monthly", original)


def test_cli_rank_of_an_unknown_customer_is_one_line(
    deployment: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nextbest.cli import main

    monkeypatch.setenv("NEXTBEST_HOME", str(deployment.home))
    with pytest.raises(SystemExit) as exited:
        main(["rank", "no-such-customer"])
    assert exited.value.code == 1
    out = capsys.readouterr()
    assert out.err.count("\n") == 1 and "Traceback" not in out.err + out.out
    assert "unknown customer 'no-such-customer'" in out.err


def test_cli_serve_before_a_feast_apply_is_one_line(
    deployment: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deployment whose Feast registry is gone: ``serve`` stops before uvicorn, naming the fix."""
    from nextbest.cli import main

    home = tmp_path / "home"
    shutil.copytree(deployment.home, home, ignore=shutil.ignore_patterns("feast"))
    monkeypatch.setenv("NEXTBEST_HOME", str(home))
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--port", "1"])
    assert exited.value.code == 1
    out = capsys.readouterr()
    assert out.err.count("\n") == 1 and "Traceback" not in out.err + out.out
    assert "nextbest features apply" in out.err


class TestDirectOnlineRead:
    """``OnlineTables`` (our read of Feast's sqlite tables) answers exactly what Feast reads."""

    def test_equals_feasts_online_read_for_every_customer_view(self, deployment: Settings) -> None:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        from nextbest.features.online_tables import OnlineTables, epoch_seconds

        store = get_store(deployment, "sqlite")
        customers = sorted(latest_candidates(deployment)["customer_id"].unique())[::25]
        ids = [*customers, "__nobody__", customers[0]]  # an unknown key and a repeated one
        keys = [EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=c)]) for c in ids]
        provider = store._get_provider()
        tables = OnlineTables(store)
        for view in store.get_feature_service(FEATURE_SERVICE_NAME).feature_view_projections:
            fv = store.get_feature_view(view.name)
            if [e.name for e in fv.entity_columns] != ["customer_id"]:
                continue
            names = [f.name for f in fv.features]
            expected = provider.online_read(store.config, fv, keys, names)
            got = tables.read(fv, keys, names)
            assert len(got) == len(expected) == len(ids)
            for (ts, values), (want_ts, want) in zip(got, expected, strict=True):
                assert ts == (epoch_seconds(want_ts) if want is not None else 0)
                assert (values is None) == (want is None)
                if want is not None:
                    assert values is not None
                    assert {k: v.SerializeToString() for k, v in values.items()} == {
                        k: v.SerializeToString() for k, v in want.items()
                    }
            assert got[-2] == (0, None)  # the unknown customer
            assert got[-1][0] == got[0][0] > 0

    def test_customer_read_equals_get_online_features(self, scorer: Scorer, deployment: Settings) -> None:
        """The reader's columns (values and event timestamps) equal Feast's ``get_online_features``."""
        from nextbest.features.online import customers_read, response_columns

        store = scorer.reader.store
        customers = sorted(latest_candidates(deployment)["customer_id"].unique())[::50]
        ids = [*customers, "__nobody__"]
        views = [v for v in scorer.views if v.join_keys == ("customer_id",)]
        refs = [r for v in views for r in v.refs]
        feast = response_columns(store.get_online_features(features=refs, entity_rows={"customer_id": ids}))
        ours = customers_read(store, views, ids)
        assert set(ours) == set(feast) - {"customer_id", "customer_id__ts"}
        for name, values in ours.items():
            assert repr(plain(values)) == repr(plain(feast[name])), name  # repr: NaN == NaN


def plain(values: list) -> list:
    """Read values with list values (protobuf containers, numpy arrays) as Python lists."""
    return [
        v if v is None or isinstance(v, str | int | float | bool) else np.asarray(v).tolist()
        for v in values
    ]
