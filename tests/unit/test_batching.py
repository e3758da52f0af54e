"""MicroBatcher: concurrent queries scored together, failures per batch, long-lived objects frozen."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from nextbest.serving.batching import MicroBatcher
from nextbest.serving.scorer import RankQuery


class RecordingScorer:
    """Answers each query with its customer id and records the batches it was given."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.fail = fail
        self.release = threading.Event()

    def rank_many(self, queries):
        self.release.wait(5)
        self.batches.append([q.customer_id for q in queries])
        if self.fail:
            raise ConnectionError("store down")
        return [q.customer_id for q in queries]


async def _run(scorer: RecordingScorer, customers: list[str], max_batch: int):
    batcher = MicroBatcher(scorer, max_batch)  # type: ignore[arg-type]
    batcher.start()
    try:
        first = asyncio.ensure_future(batcher.rank(RankQuery(customers[0], 3)))
        await asyncio.sleep(0.05)  # the first query is being scored: the others queue behind it
        rest = asyncio.gather(*(batcher.rank(RankQuery(c, 3)) for c in customers[1:]), return_exceptions=True)
        await asyncio.sleep(0.05)
        scorer.release.set()
        return [await asyncio.gather(first, return_exceptions=True), *(await rest)]
    finally:
        await batcher.close()


def test_queries_waiting_together_are_scored_in_batches_of_at_most_max_batch():
    scorer = RecordingScorer()
    answers = asyncio.run(_run(scorer, ["a", "b", "c", "d", "e", "f"], max_batch=3))
    assert answers[0] == ["a"] and answers[1:] == ["b", "c", "d", "e", "f"]
    assert scorer.batches == [["a"], ["b", "c", "d"], ["e", "f"]]


def test_a_failed_batch_fails_every_query_in_it():
    scorer = RecordingScorer(fail=True)
    answers = asyncio.run(_run(scorer, ["a", "b", "c"], max_batch=8))
    assert isinstance(answers[0][0], ConnectionError)
    assert all(isinstance(a, ConnectionError) for a in answers[1:])


def test_objects_alive_after_the_first_batch_are_frozen_out_of_full_collections():
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        counts = []

        async def frozen_while_open():
            batcher = MicroBatcher(RecordingScorer(), 1)  # type: ignore[arg-type]
            batcher.scorer.release.set()
            batcher.start()
            await batcher.rank(RankQuery("a", 3))
            counts.append(gc.get_freeze_count())
            await batcher.close()
            counts.append(gc.get_freeze_count())

        asyncio.run(frozen_while_open())
        assert counts[0] > 1000  # the interpreter's modules, pytest's, this test's objects
        assert counts[1] == 0  # closed: collectable again
    finally:
        gc.unfreeze()


@pytest.fixture(autouse=True)
def _no_frozen_leftovers():
    yield
    gc.unfreeze()
