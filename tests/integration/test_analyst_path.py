"""The analyst's path: a new customer x product feature written in SQL + yml only reaches Feast, training's
point-in-time retrieval and the online store, with the same values everywhere (real dbt, real Feast)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from nextbest.dbt import run_dbt
from nextbest.features.online import online_features
from nextbest.features.retrieval import historical_features, service_feature_views
from nextbest.features.store import apply_definitions, get_store, materialize
from nextbest.settings import DBT_PROJECT_DIR, Settings
from tests.integration.dbt_fixtures import read_mart

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NEW_FEATURE = "has_spend_category_last_12_months"
PAIR_SQL = Path("models/marts/features/feat_customer_product_monthly.sql")
PAIR_YML = Path("models/marts/features/feat_customer_product_monthly.yml")
ANCHOR_SQL = "            as sum_spend_category_last_12_months,\n"
NEW_SQL = (
    "        cast(coalesce(category_activity.sum_spend_last_12_months, 0.0) > 0 as boolean)"
    f" as {NEW_FEATURE},\n"
)
NEW_YML = f"""      - name: {NEW_FEATURE}
        data_type: boolean
        description: True if the customer spent on this product's category in the last 12 months.
"""


def add_pair_feature(project: Path) -> None:
    """What an analyst does: one column in the pair model's SQL and its yml. Nothing else."""
    sql = (project / PAIR_SQL).read_text()
    assert ANCHOR_SQL in sql, "the pair model changed: update the anchor of this test"
    (project / PAIR_SQL).write_text(sql.replace(ANCHOR_SQL, ANCHOR_SQL + NEW_SQL))
    yml = (project / PAIR_YML).read_text()
    (project / PAIR_YML).write_text(yml.rstrip("\n") + "\n" + NEW_YML)


@pytest.fixture(scope="module")
def edited_build(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from nextbest.ingest.synthetic import generate_synthetic

    tmp = tmp_path_factory.mktemp("analyst")
    project = tmp / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    add_pair_feature(project)
    settings = Settings(home=tmp / "home")
    generate_synthetic(settings.raw_dir, customers=300, months=6, seed=4)
    meta = json.loads((settings.raw_dir / "dataset.json").read_text())
    dbt_vars = {k: meta[k] for k in ("observed_until", "burn_in_months") if meta.get(k) is not None}
    run_dbt(["build"], settings, dbt_vars, quiet=True, project_dir=project)
    apply_definitions(settings, "sqlite")
    materialize(settings, "sqlite", progress=False)
    return settings


def latest_pairs(settings: Settings) -> pd.DataFrame:
    pairs = read_mart(settings, "feat_customer_product_monthly")
    return pairs[pairs["event_timestamp"] == pairs["event_timestamp"].max()].reset_index(drop=True)


def test_the_new_column_is_served_by_the_packed_view(edited_build: Settings) -> None:
    views = service_feature_views(get_store(edited_build, "sqlite"), "ranker_v1")
    assert NEW_FEATURE in views["customer_product_monthly"]
    packed = pd.read_parquet(edited_build.marts_dir / "feat_customer_product_monthly_packed.parquet")
    assert NEW_FEATURE in packed.columns


def test_point_in_time_values_equal_the_pair_model(edited_build: Settings) -> None:
    pairs = latest_pairs(edited_build)
    assert pairs[NEW_FEATURE].any() and not pairs[NEW_FEATURE].all()  # both values occur
    keys = pairs[["customer_id", "product_id", "event_timestamp"]]
    out = historical_features(get_store(edited_build, "sqlite"), keys, candidates_only=True)
    assert out[NEW_FEATURE].dtype == "boolean"
    assert out[NEW_FEATURE].tolist() == pairs[NEW_FEATURE].tolist()


def test_online_values_equal_the_pair_model(edited_build: Settings) -> None:
    pairs = latest_pairs(edited_build)
    store = get_store(edited_build, "sqlite")
    for customer in pairs["customer_id"].drop_duplicates().iloc[:20]:
        mine = pairs[pairs["customer_id"] == customer]
        served = online_features(store, customer, mine["product_id"].tolist()).frame
        assert served[NEW_FEATURE].tolist() == mine[NEW_FEATURE].tolist(), customer
