"""Retrieve, then rank, on a small real deployment (synthetic bank -> dbt -> Feast sqlite -> bundle): a tiny
two-tower model is trained on the build, its embedding marts are registered in Feast and materialized,
``nextbest retrieval index`` ships its item embeddings in the ranker's bundle, and the Scorer ranks only
each customer's top-N retrieved candidates: the N candidates of highest affinity to the customer's
embedding read from the online store, among the customer's candidates of the latest snapshot (owned /
ineligible products never), scored exactly as rank-all scores them. A Scorer with ``retrieval=False``
ranks every candidate, as before; so does a Scorer whose online embeddings come from another model."""

from __future__ import annotations

import shutil
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from nextbest.cli import main
from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID
from nextbest.features.embeddings import (
    CUSTOMER_EMBEDDING_VIEW,
    EMBEDDING,
    FEAT_CUSTOMER_EMBEDDING_MONTHLY,
    PRODUCT_EMBEDDING_VIEW,
    RETRIEVAL_MODEL,
    RETRIEVAL_SERVICE_NAME,
)
from nextbest.features.store import get_store
from nextbest.retrieval.bundle import INDEX_DIR, ITEMS_FILE, load_index
from nextbest.retrieval.embeddings import read_embeddings
from nextbest.retrieval.stage import embed_build, models_dir, publish_embeddings, train_retrieval
from nextbest.retrieval.train import TrainConfig, latest_model
from nextbest.serving.batch import score_batch
from nextbest.serving.readiness import ProbeCache, check_retrieval
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
    publish_embeddings(settings)
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


def latest_embeddings(settings: Settings) -> tuple[pd.DataFrame, np.ndarray]:
    """The customer embedding mart's rows of the latest snapshot: keys and vectors."""
    keys, vectors = read_embeddings(settings.marts_dir / f"{FEAT_CUSTOMER_EMBEDDING_MONTHLY}.parquet")
    latest = (keys[EVENT_TIMESTAMP] == keys[EVENT_TIMESTAMP].max()).to_numpy()
    return keys[latest].reset_index(drop=True), vectors[latest]


def expected_retrieved(settings: Settings) -> dict[str, list[str]]:
    """Each latest customer's top-N candidates by affinity, ties by product id, from the shipped item
    vectors and the customer embedding mart."""
    index_dir = latest_bundle(settings.models_dir) / INDEX_DIR
    keys, customer_vecs = latest_embeddings(settings)
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


def test_the_embeddings_are_feast_views_of_their_own_service_and_online(deployment: Settings) -> None:
    store = get_store(deployment, "sqlite")
    service = store.get_feature_service(RETRIEVAL_SERVICE_NAME)
    assert {p.name for p in service.feature_view_projections} == {
        CUSTOMER_EMBEDDING_VIEW,
        PRODUCT_EMBEDDING_VIEW,
    }
    ranker = store.get_feature_service("ranker_v1")
    assert not {p.name for p in ranker.feature_view_projections} & {
        CUSTOMER_EMBEDDING_VIEW,
        PRODUCT_EMBEDDING_VIEW,
    }
    keys, vectors = latest_embeddings(deployment)
    rows = keys.head(5)
    online = store.get_online_features(
        features=[f"{CUSTOMER_EMBEDDING_VIEW}:{EMBEDDING}", f"{CUSTOMER_EMBEDDING_VIEW}:{RETRIEVAL_MODEL}"],
        entity_rows=[{CUSTOMER_ID: str(c)} for c in rows[CUSTOMER_ID]],
    ).to_dict()
    np.testing.assert_allclose(np.array(online[EMBEDDING], dtype=np.float32), vectors[:5], rtol=1e-6)
    assert online[RETRIEVAL_MODEL] == [latest_model(models_dir(deployment)).name] * 5


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


def test_online_embeddings_of_another_model_narrow_nothing_and_cannot_be_indexed(
    indexed: Settings, capsys
) -> None:
    trained = latest_model(models_dir(indexed))
    other = shutil.copytree(trained, trained.with_name(f"{trained.name}-copy"))
    scorer = Scorer(indexed, ServingSettings(online_store="sqlite"))
    customer, rows = next(
        (c, r) for c, r in latest_candidates(indexed).groupby(CUSTOMER_ID) if len(r) > TOP_N + 1
    )
    assert scorer.rank(str(customer), k=10).n_candidates == TOP_N
    assert check_retrieval(scorer, ProbeCache()) == (True, None)
    try:
        embed_build(indexed, other)  # the live build's embeddings now come from another model
        publish_embeddings(indexed)
        assert scorer.rank(str(customer), k=10).n_candidates == len(rows)  # all: not its vector space
        active, reason = check_retrieval(scorer, ProbeCache())
        assert (
            not active
            and f"are retrieval model {other.name}'s, the bundle index's are {trained.name}'s" in reason
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("NEXTBEST_HOME", str(indexed.home))
            with pytest.raises(SystemExit) as ended:
                main(
                    [
                        "retrieval",
                        "index",
                        "--bundle",
                        str(latest_bundle(indexed.models_dir)),
                        "--model",
                        str(trained),
                    ]
                )
        err = capsys.readouterr().err
        assert ended.value.code != 0 and err.count("\n") == 1 and "Traceback" not in err
        assert f"not by model {trained.name}: run `nextbest retrieval embed --model" in err
    finally:
        embed_build(indexed, trained)
        publish_embeddings(indexed)
        shutil.rmtree(other)
    assert scorer.rank(str(customer), k=10).n_candidates == TOP_N
