"""nextbest.training.artifacts:
bundles round-trip exactly, are written atomically, refuse mismatched features."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.columns import SEASONAL_INDEX
from nextbest.training import artifacts
from nextbest.training.artifacts import (
    BundleMismatchError,
    ModelBundle,
    code_version,
    file_sha256,
    latest_bundle,
    load_bundle,
    save_bundle,
)
from nextbest.training.calibration import fit_calibrators
from nextbest.training.config import PointwiseConfig, RankerConfig
from nextbest.training.ranker import fit_ranker, prepare_groups

FEATURES = ["product_id", "segment", "affinity", "income"]


def simulate(n_customers: int = 300, seed: int = 0) -> pd.DataFrame:
    """6 products, two snapshots; ``affinity`` and the product drive adoption; income has NaN."""
    rng = np.random.default_rng(seed)
    n_products = 6
    frames = []
    for snapshot in ("2024-01-31", "2024-02-29"):
        c = np.repeat(np.arange(n_customers), n_products)
        p = np.tile(np.arange(n_products), n_customers)
        affinity = rng.normal(size=c.size)
        prob = 1 / (1 + np.exp(-(-2.5 + 0.3 * p + 2.0 * affinity)))
        income = rng.lognormal(10, 0.5, c.size)
        income[rng.random(c.size) < 0.1] = np.nan
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": [f"C{i}" for i in c],
                    "product_id": [f"P{j}" for j in p],
                    "event_timestamp": pd.Timestamp(snapshot),
                    "segment": rng.choice(["a", "b", "c"], c.size),
                    "affinity": affinity,
                    "income": income,
                    "label": (rng.random(c.size) < prob).astype(int),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulate()


@pytest.fixture(scope="module")
def bundle(data: pd.DataFrame) -> ModelBundle:
    train_df = data[data["event_timestamp"] < "2024-02-01"]
    valid_df = data[data["event_timestamp"] > "2024-02-01"]
    train = prepare_groups(train_df, FEATURES)
    valid = prepare_groups(valid_df, FEATURES, categories=train.categories)
    ranker = fit_ranker(train, valid, RankerConfig(n_estimators=50, early_stopping_rounds=10, n_jobs=1))
    scored = valid_df.assign(score=ranker.score(valid_df))
    calibrators = fit_calibrators(scored, feature_cols=["segment"], min_positives=30)
    return ModelBundle(
        ranker=ranker,
        calibrators=calibrators,
        feature_service_name="ranker_v1",
        feature_service_version=1,
        dbt_manifest_hash="abc123",
        training_config={"max_negatives_per_group": None, "params": {"learning_rate": 0.05}},
        data_range={"train_end": "2024-01-31", "valid_end": "2024-02-29"},
        metrics={"ndcg_at_7": np.float64(0.8), "n_groups": np.int64(42)},
    )


class TestRoundTrip:
    def test_identical_scores_and_probabilities(
        self, bundle: ModelBundle, data: pd.DataFrame, tmp_path: Path
    ) -> None:
        path = save_bundle(bundle, tmp_path)
        loaded = load_bundle(path, expected_features=FEATURES, expected_service="ranker_v1")
        np.testing.assert_array_equal(loaded.ranker.score(data), bundle.ranker.score(data))
        scored = data.assign(score=bundle.ranker.score(data))
        assert bundle.calibrators is not None and loaded.calibrators is not None
        np.testing.assert_array_equal(
            loaded.calibrators.predict_proba(scored), bundle.calibrators.predict_proba(scored)
        )

    def test_metadata_preserved(self, bundle: ModelBundle, tmp_path: Path) -> None:
        loaded = load_bundle(save_bundle(bundle, tmp_path))
        assert loaded.feature_cols == FEATURES
        assert loaded.categories == bundle.categories
        assert loaded.ranker.best_iteration == bundle.ranker.best_iteration
        assert (loaded.feature_service_name, loaded.feature_service_version) == ("ranker_v1", 1)
        assert loaded.dbt_manifest_hash == "abc123"
        assert loaded.training_config == bundle.training_config
        assert loaded.data_range == bundle.data_range
        assert loaded.metrics == {"ndcg_at_7": 0.8, "n_groups": 42}
        assert loaded.code_version == bundle.code_version
        assert loaded.created_at == bundle.created_at
        assert loaded.version == bundle.version

    def test_layout(self, bundle: ModelBundle, tmp_path: Path) -> None:
        path = save_bundle(bundle, tmp_path)
        assert path.parent == tmp_path and path.name == bundle.version
        assert sorted(p.name for p in path.iterdir()) == ["bundle.json", "calibrators.joblib", "ranker.txt"]
        assert (path / "ranker.txt").read_text().startswith("tree")  # LightGBM's text format
        assert json.loads((path / "bundle.json").read_text())["feature_cols"] == FEATURES
        assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary directory left

    def test_build_vars_are_kept_and_old_bundles_have_none(self, bundle: ModelBundle, tmp_path: Path) -> None:
        built = replace(bundle, build_vars={"horizon_months": 2, "activity_lookback_months": 3})
        path = save_bundle(built, tmp_path)
        assert load_bundle(path).build_vars == {"horizon_months": 2, "activity_lookback_months": 3}
        meta = json.loads((path / "bundle.json").read_text())
        del meta["build_vars"]
        (path / "bundle.json").write_text(json.dumps(meta))
        assert load_bundle(path).build_vars == {}

    def test_a_bundle_pickled_before_the_nextbest_namespace_still_loads(
        self, bundle: ModelBundle, data: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Bundles saved when the code was the top-level ``training`` package name its classes so."""
        import sys

        from nextbest.training import calibration

        monkeypatch.setitem(sys.modules, "training", sys.modules["nextbest.training"])
        monkeypatch.setitem(sys.modules, "training.calibration", calibration)
        for cls in (calibration.Calibrators, calibration.MonotoneCalibrator):
            monkeypatch.setattr(cls, "__module__", "training.calibration")
        path = save_bundle(bundle, tmp_path)
        monkeypatch.undo()
        pickled = (path / "calibrators.joblib").read_bytes()
        assert b"training.calibration" in pickled and b"nextbest.training" not in pickled
        assert "training" not in sys.modules
        loaded = load_bundle(path)
        assert "training" not in sys.modules and "training.calibration" not in sys.modules
        scored = data.assign(score=bundle.ranker.score(data))
        np.testing.assert_array_equal(
            loaded.calibrators.predict_proba(scored), bundle.calibrators.predict_proba(scored)
        )

    def test_without_calibrators(self, bundle: ModelBundle, tmp_path: Path) -> None:
        bare = ModelBundle(
            ranker=bundle.ranker,
            calibrators=None,
            feature_service_name="ranker_v1",
            feature_service_version=1,
        )
        loaded = load_bundle(save_bundle(bare, tmp_path))
        assert loaded.calibrators is None
        assert not (tmp_path / bare.version / "calibrators.joblib").exists()

    def test_a_ranker_with_a_pointwise_part_scores_every_tree_after_loading(
        self, bundle: ModelBundle, data: pd.DataFrame, tmp_path: Path
    ) -> None:
        train = prepare_groups(data[data["event_timestamp"] < "2024-02-01"], FEATURES)
        valid = prepare_groups(
            data[data["event_timestamp"] > "2024-02-01"], FEATURES, categories=train.categories
        )
        params = RankerConfig(
            n_estimators=50, early_stopping_rounds=10, n_jobs=1, pointwise=PointwiseConfig()
        )
        ranker = fit_ranker(train, valid, params)
        path = save_bundle(replace(bundle, ranker=ranker), tmp_path)
        meta = json.loads((path / "bundle.json").read_text())
        assert ranker.pointwise_trees > 0
        assert (meta["bundle_format"], meta["pointwise_trees"]) == (2, ranker.pointwise_trees)  # 1: dropped
        loaded = load_bundle(path)
        assert loaded.ranker.n_trees == ranker.n_trees == ranker.best_iteration + ranker.pointwise_trees
        np.testing.assert_array_equal(loaded.ranker.score(data), ranker.score(data))
        # a bundle without one is still format 1, readable by the code before it
        plain = json.loads((save_bundle(bundle, tmp_path / "plain") / "bundle.json").read_text())
        assert (plain["bundle_format"], plain["pointwise_trees"]) == (1, 0)

    def test_a_seasonal_offset_round_trips_as_format_3(
        self, bundle: ModelBundle, data: pd.DataFrame, tmp_path: Path
    ) -> None:
        ranker = replace(bundle.ranker, seasonal_offset=0.75, seasonal_weight=0.25)
        path = save_bundle(replace(bundle, ranker=ranker), tmp_path)
        meta = json.loads((path / "bundle.json").read_text())
        assert (meta["bundle_format"], meta["seasonal_offset"]) == (3, 0.75)  # 2 would score without it
        loaded = load_bundle(path)
        assert (loaded.ranker.seasonal_offset, loaded.ranker.seasonal_weight) == (0.75, 0.25)
        assert loaded.ranker.input_cols == [*bundle.ranker.feature_cols, SEASONAL_INDEX]
        seasonal = data.assign(**{SEASONAL_INDEX: np.where(np.arange(len(data)) % 2, np.e, np.nan)})
        expected = bundle.ranker.score(data) + 0.75 * (np.arange(len(data)) % 2)  # ln e = 1, missing adds 0
        np.testing.assert_allclose(loaded.ranker.score(seasonal), expected, rtol=0, atol=1e-12)
        with pytest.raises(KeyError, match=SEASONAL_INDEX):
            loaded.ranker.score(data)


class TestAtomicity:
    def test_existing_version_not_overwritten(self, bundle: ModelBundle, tmp_path: Path) -> None:
        path = save_bundle(bundle, tmp_path)
        before = (path / "bundle.json").read_text()
        with pytest.raises(FileExistsError):
            save_bundle(bundle, tmp_path)
        assert (path / "bundle.json").read_text() == before

    def test_failed_write_leaves_nothing(
        self, bundle: ModelBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken_dump(*args: object, **kwargs: object) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(artifacts.joblib, "dump", broken_dump)
        with pytest.raises(OSError, match="disk full"):
            save_bundle(bundle, tmp_path)
        assert list(tmp_path.iterdir()) == []
        assert latest_bundle(tmp_path) is None

    def test_latest_bundle_ignores_temporary_dirs(self, bundle: ModelBundle, tmp_path: Path) -> None:
        older = ModelBundle(
            ranker=bundle.ranker,
            calibrators=None,
            feature_service_name="ranker_v1",
            feature_service_version=1,
            created_at="2020-01-01T00:00:00.000000Z",
        )
        save_bundle(older, tmp_path)
        newest = save_bundle(bundle, tmp_path)
        (tmp_path / ".tmp-zzzz").mkdir()
        assert latest_bundle(tmp_path) == newest
        assert latest_bundle(tmp_path / "missing") is None


class TestRefusal:
    def test_missing_and_extra_features_listed(self, bundle: ModelBundle, tmp_path: Path) -> None:
        path = save_bundle(bundle, tmp_path)
        live = ["product_id", "segment", "affinity", "tenure_months"]
        with pytest.raises(BundleMismatchError) as err:
            load_bundle(path, expected_features=live)
        message = str(err.value)
        assert "tenure_months" in message and "income" in message

    def test_reordered_features_refused(self, bundle: ModelBundle, tmp_path: Path) -> None:
        path = save_bundle(bundle, tmp_path)
        with pytest.raises(BundleMismatchError, match="different order"):
            load_bundle(path, expected_features=list(reversed(FEATURES)))

    def test_other_feature_service_refused(self, bundle: ModelBundle, tmp_path: Path) -> None:
        path = save_bundle(bundle, tmp_path)
        with pytest.raises(BundleMismatchError, match="ranker_v2"):
            load_bundle(path, expected_service="ranker_v2")

    def test_served_features_the_ranker_leaves_out_are_no_mismatch(
        self, bundle: ModelBundle, tmp_path: Path
    ) -> None:
        trimmed = replace(bundle, unused_features=["tenure_months"])
        path = save_bundle(trimmed, tmp_path)
        live = [*FEATURES[:1], "tenure_months", *FEATURES[1:]]
        assert load_bundle(path, expected_features=live).unused_features == ["tenure_months"]
        with pytest.raises(BundleMismatchError, match="missing_feature"):  # any other new feature is
            load_bundle(path, expected_features=[*live, "missing_feature"])

    def test_not_a_bundle(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="not a model bundle"):
            load_bundle(tmp_path)

    def test_an_unknown_bundle_format_is_refused(self, bundle: ModelBundle, tmp_path: Path) -> None:
        path = save_bundle(bundle, tmp_path)
        meta = json.loads((path / "bundle.json").read_text())
        (path / "bundle.json").write_text(json.dumps(meta | {"bundle_format": 4}))
        with pytest.raises(BundleMismatchError, match="bundle format 4, expected 1 or 2 or 3"):
            load_bundle(path)


class TestHelpers:
    def test_file_sha256_known_answer(self, tmp_path: Path) -> None:
        path = tmp_path / "manifest.json"
        path.write_bytes(b"abc")
        assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

    def test_code_version_is_non_empty(self) -> None:
        assert code_version().strip() != ""


class TestBuild:
    VARS = {
        "horizon_months": 1,
        "activity_lookback_months": 3,
        "burn_in_months": 0,
        "observed_until": "2024-06-30",
    }

    def test_build_id_and_dbt_vars_round_trip_and_old_bundles_have_none(
        self, bundle: ModelBundle, tmp_path: Path
    ) -> None:
        built = replace(bundle, build_id="20240701T000000000000Z-abc123", dbt_vars=self.VARS)
        path = save_bundle(built, tmp_path)
        loaded = load_bundle(path)
        assert loaded.build_id == "20240701T000000000000Z-abc123" and loaded.dbt_vars == self.VARS
        meta = json.loads((path / "bundle.json").read_text())
        del meta["build_id"], meta["dbt_vars"]
        (path / "bundle.json").write_text(json.dumps(meta))
        assert load_bundle(path).build_id is None and load_bundle(path).dbt_vars == {}

    def test_differences_name_the_builds_and_each_changed_var(self, bundle: ModelBundle) -> None:
        trained = replace(bundle, build_id="A", dbt_vars=self.VARS)
        assert artifacts.build_differences(trained, "A", dict(self.VARS)) == []
        live = self.VARS | {"horizon_months": 2, "observed_until": "2024-07-31"}
        assert artifacts.build_differences(trained, "B", live) == [
            "trained on build A, the live build is B",
            "dbt vars differ: horizon_months 1 (bundle) vs 2 (live), "
            "observed_until 2024-06-30 (bundle) vs 2024-07-31 (live)",
        ]

    def test_a_bundle_without_a_build_id_is_compared_on_its_vars_only(self, bundle: ModelBundle) -> None:
        old = replace(bundle, build_vars={"horizon_months": 1, "activity_lookback_months": 3})
        assert artifacts.build_differences(old, "B", dict(self.VARS)) == []
        assert artifacts.build_differences(old, "B", self.VARS | {"activity_lookback_months": 6}) == [
            "dbt vars differ: activity_lookback_months 3 (bundle) vs 6 (live)"
        ]
