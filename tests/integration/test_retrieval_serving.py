"""Retrieve, then rank, on a small real deployment (synthetic bank -> dbt -> Feast sqlite -> bundle): a tiny
two-tower model is trained on the build, ``nextbest retrieval index`` ships it in the ranker's bundle, and
the Scorer ranks only each customer's top-N retrieved candidates: the N candidates of highest affinity
among the customer's candidates of the latest snapshot (owned / ineligible products never), scored
exactly as rank-all scores them. A Scorer with ``retrieval=False`` ranks every candidate, as before."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from nextbest.cli import main
from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID
from nextbest.retrieval.bundle import CUSTOMERS_FILE, INDEX_DIR, ITEMS_FILE, load_index
from nextbest.retrieval.embeddings import read_embeddings
from nextbest.retrieval.stage import train_retrieval
from nextbest.retrieval.train import TrainConfig
from nextbest.serving.batch import score_batch
from nextbest.serving.scorer import Scorer
from nextbest.settings import ServingSettings, Settings
from nextbest.training.artifacts import latest_bundle
from tests.integration.serving_fixtures import build_deployment, latest_candidates

pytestmark = pytest.mark.integration

TOP_N = 3
TINY = TrainConfig(epochs=2, batch_size=64, hidden=8, dim=8, seed=0)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = build_deployment(tmp_path_factory.mktemp("retrieval_serving"), customers=400, months=6, seed=7)
    train_retrieval(settings, TINY)
    return settings


@pytest.fixture(scope="module")
def indexed(deployment: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    bundle = latest_bundle(deployment.models_dir)
    assert bundle is not None and load_index(bundle) is None
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEXTBEST_HOME", str(deployment.home))
        with pytest.raises(SystemExit) as ended:
            main(["retrieval", "index", "--bundle", str(bundle), "--top-n", str(TOP_N)])
    assert ended.value.code in (0, None)
    return deployment


def expected_retrieved(settings: Settings) -> dict[str, list[str]]:
    """Each latest customer's top-N candidates by affinity, ties by product id, from the shipped files."""
    index_dir = latest_bundle(settings.models_dir) / INDEX_DIR
    keys, customer_vecs = read_embeddings(index_dir / CUSTOMERS_FILE)
    items = np.load(index_dir / ITEMS_FILE)
    catalogue = sorted(pd.read_parquet(settings.marts_dir / "dim_products.parquet")[PRODUCT_ID].astype(str))
    position = {p: i for i, p in enumerate(catalogue)}
    vec_of = dict(zip(keys[CUSTOMER_ID].astype(str), customer_vecs, strict=True))
    out = {}
    for customer, rows in latest_candidates(settings).groupby(CUSTOMER_ID):
        frame = pd.DataFrame({PRODUCT_ID: rows[PRODUCT_ID].astype(str)})
        frame["item"] = frame[PRODUCT_ID].map(position)
        frame["affinity"] = [float(items[i] @ vec_of[str(customer)]) for i in frame["item"]]
        frame = frame.sort_values(["affinity", "item"], ascending=[False, True])
        out[str(customer)] = frame[PRODUCT_ID].head(TOP_N).tolist()
    return out


def test_rank_scores_only_the_top_n_retrieved_candidates(indexed: Settings) -> None:
    with_retrieval = Scorer(indexed, ServingSettings(online_store="sqlite"))
    rank_all = Scorer(indexed, ServingSettings(online_store="sqlite", retrieval=False))
    assert with_retrieval.retrieval is not None and with_retrieval.retrieval.top_n == TOP_N
    assert rank_all.retrieval is None
    expected = expected_retrieved(indexed)
    candidates = latest_candidates(indexed).groupby(CUSTOMER_ID)[PRODUCT_ID].apply(set)
    narrowed = 0
    for customer in sorted(expected)[:40]:
        got = with_retrieval.rank(customer, k=10)
        everything = rank_all.rank(customer, k=10)
        assert everything.n_candidates == len(candidates[customer])
        assert got.n_candidates == min(TOP_N, len(candidates[customer]))
        ranked = [p.product_id for p in got.products]
        # the retrieved set, all candidates (no owned / ineligible product), ranked by the same scores
        assert set(ranked) == set(expected[customer]) <= candidates[customer]
        same = rank_all.rank(customer, k=10, product_ids=expected[customer])
        assert [(p.product_id, p.score) for p in got.products] == [
            (p.product_id, p.score) for p in same.products
        ]
        narrowed += everything.n_candidates > TOP_N
    assert narrowed > 0, "no customer had more than TOP_N candidates: the test would not test narrowing"


def test_an_explicit_product_list_is_not_narrowed(indexed: Settings) -> None:
    scorer = Scorer(indexed, ServingSettings(online_store="sqlite"))
    customer, rows = next(
        (c, r) for c, r in latest_candidates(indexed).groupby(CUSTOMER_ID) if len(r) > TOP_N + 1
    )
    asked = rows[PRODUCT_ID].astype(str).tolist()
    assert scorer.rank(str(customer), k=10, product_ids=asked).n_candidates == len(asked)


def test_score_batch_scores_the_retrieved_candidates_as_online(indexed: Settings, tmp_path) -> None:
    snapshot = pd.Timestamp(latest_candidates(indexed)[EVENT_TIMESTAMP].max()).date() - timedelta(days=1)
    retrieved, everything = tmp_path / "retrieved.parquet", tmp_path / "all.parquet"
    score_batch(snapshot, retrieved, settings=indexed, progress=False)
    score_batch(
        snapshot, everything, settings=indexed, progress=False, serving=ServingSettings(retrieval=False)
    )
    got = pd.read_parquet(retrieved)
    assert len(pd.read_parquet(everything)) == len(latest_candidates(indexed))
    expected = expected_retrieved(indexed)
    assert got.groupby(CUSTOMER_ID)[PRODUCT_ID].apply(set).to_dict() == {
        c: set(p) for c, p in expected.items()
    }
    online = Scorer(indexed, ServingSettings(online_store="sqlite"))
    for customer in sorted(expected)[:20]:
        rows = got[got[CUSTOMER_ID] == customer].sort_values("rank")
        assert rows[PRODUCT_ID].tolist() == [p.product_id for p in online.rank(customer, k=TOP_N).products]
