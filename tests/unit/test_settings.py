"""nextbest.settings: one tree (home, online store, serving, build vars), read from the environment once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nextbest.settings import (
    DBT_PROJECT_DIR,
    BuildVars,
    ServingSettings,
    Settings,
    SettingsError,
    get_settings,
)


class TestTree:
    def test_branches_read_the_environment_when_the_settings_are_created(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("NEXTBEST_ONLINE_STORE", " Redis")
        monkeypatch.setenv("NEXTBEST_REDIS_URL", "redis://10.0.0.5:6380/")
        monkeypatch.setenv("NEXTBEST_SERVING_REFUSE_STALE", "true")
        settings = Settings(home=tmp_path)
        assert settings.online.kind == "redis"
        assert settings.online.redis_url == "10.0.0.5:6380"
        assert settings.serving.refuse_stale is True
        monkeypatch.delenv("NEXTBEST_ONLINE_STORE")
        assert settings.online.kind == "redis", "no re-read after creation"
        assert Settings(home=tmp_path).online.kind == "sqlite"

    def test_an_unknown_online_store_names_the_variable(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("NEXTBEST_ONLINE_STORE", "memcached")
        with pytest.raises(ValueError, match="NEXTBEST_ONLINE_STORE='memcached'"):
            Settings(home=tmp_path)

    def test_serving_settings_keep_their_own_prefix(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("NEXTBEST_SERVING_MAX_K", "12")
        assert ServingSettings().max_k == 12
        assert ServingSettings(max_k=3).max_k == 3


class TestBuildVars:
    def test_defaults_are_dbt_project_ymls(self) -> None:
        project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
        defaults = BuildVars.defaults()
        assert defaults.horizon_months == project["vars"]["horizon_months"]
        assert defaults.activity_lookback_months == project["vars"]["activity_lookback_months"]

    def test_a_fresh_home_builds_with_the_defaults_and_a_saved_build_is_read_back(
        self, tmp_path: Path
    ) -> None:
        settings = Settings(home=tmp_path)
        assert settings.build == BuildVars.defaults()
        chosen = settings.build.replace(horizon_months=2, activity_lookback_months=None)
        assert chosen.horizon_months == 2
        assert chosen.activity_lookback_months == BuildVars.defaults().activity_lookback_months
        chosen.write(settings.build_vars_path)
        assert settings.build_vars_path.parent == settings.warehouse_dir
        assert Settings(home=tmp_path).build == chosen
        assert not list(settings.warehouse_dir.glob(".*.tmp"))

    def test_invalid_values_are_rejected(self) -> None:
        with pytest.raises(ValueError, match="horizon_months"):
            BuildVars(horizon_months=0, activity_lookback_months=3)
        with pytest.raises(ValueError, match="extra"):
            BuildVars.model_validate({"horizon_months": 1, "activity_lookback_months": 3, "bogus": 1})


class TestBuildPaths:
    def test_without_a_pointer_the_flat_layout_is_read(self, tmp_path: Path) -> None:
        settings = Settings(home=tmp_path)
        assert settings.live_build_id is None and settings.current_build_id is None
        assert settings.marts_dir == tmp_path / "warehouse" / "marts"
        assert not (tmp_path / "warehouse").exists(), "reading settings creates nothing"

    def test_paths_follow_the_live_pointer_when_read_and_a_pinned_copy_stays(self, tmp_path: Path) -> None:
        settings = Settings(home=tmp_path)
        settings.warehouse_dir.mkdir()
        settings.live_pointer_path.write_text(json.dumps({"build_id": "A"}))
        assert settings.marts_dir == tmp_path / "warehouse" / "builds" / "A" / "marts"
        assert settings.build_vars_path == tmp_path / "warehouse" / "builds" / "A" / "build_vars.json"
        pinned = settings.pinned()
        settings.live_pointer_path.write_text(json.dumps({"build_id": "B"}))
        assert settings.build_dir.name == "B" and pinned.build_dir.name == "A"
        assert pinned.live_build_id == "B" and pinned.current_build_id == "A"

    def test_nextbest_build_id_pins_a_build(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("NEXTBEST_BUILD_ID", "C")
        assert Settings(home=tmp_path).marts_dir == tmp_path / "warehouse" / "builds" / "C" / "marts"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("NEXTBEST_TRAINING_ENGINE", "spark", "NEXTBEST_TRAINING_ENGINE='spark': Input should be 'local' or"),
        ("NEXTBEST_SERVING_READ_TIMEOUT_MS", "abc", "NEXTBEST_SERVING_READ_TIMEOUT_MS='abc'"),
        ("NEXTBEST_DBT_THREADS", "0", "NEXTBEST_DBT_THREADS='0': Input should be greater than or equal to 1"),
        ("NEXTBEST_ENGINE", "oracle", "NEXTBEST_ENGINE='oracle': Value error, expected one of duckdb, spark"),
    ],
)
def test_a_refused_environment_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        get_settings()
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_the_training_engine_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXTBEST_TRAINING_ENGINE", "dask")
    monkeypatch.setenv("NEXTBEST_TRAINING_DASK_SCHEDULER", "tcp://10.0.0.5:8786")
    training = get_settings().training
    assert (training.engine, training.dask_scheduler) == ("dask", "tcp://10.0.0.5:8786")
    assert training.dask_workers == 2
