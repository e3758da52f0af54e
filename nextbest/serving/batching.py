"""Micro-batching: concurrent ranking requests of the HTTP API scored together.

``MicroBatcher.rank`` queues one ``RankQuery`` and awaits its answer; one consumer task takes whatever
queries are waiting (at most ``max_batch``) and ranks them with ONE ``Scorer.rank_many`` call (one online
read of the customers' keys, one vectorised predict + calibrate) in a worker thread, so the event loop
keeps accepting requests meanwhile. No timer: a lone request is scored at once; under load, the requests
that arrived while the previous batch was scored form the next one.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from nextbest.serving.errors import ServingError
from nextbest.serving.results import Ranking
from nextbest.serving.scorer import RankQuery, Scorer

Pending = tuple[RankQuery, "asyncio.Future[Ranking | ServingError]"]


FREEZE_AFTER_BATCHES = 64
"""Batches after which the objects alive are moved out of the garbage collector's reach (``gc.freeze``)."""


def freeze_long_lived() -> None:
    """Collect, then freeze what is still alive: the bundle, catalogue, Feast registry and what the first
    requests loaded lazily (libraries, predictors). A full collection then scans only what later requests
    allocate, instead of pausing the worker for ~150 ms over the whole heap (~300k objects); measured with
    ``benchmarks/bench_serving.py``'s load section."""
    gc.collect()
    gc.freeze()


class MicroBatcher:
    """Scores queued ranking queries in batches of at most ``max_batch`` (see the module docstring).

    Create and ``start`` it inside the running event loop; ``close`` it on shutdown.
    """

    def __init__(self, scorer: Scorer, max_batch: int) -> None:
        self.scorer = scorer
        self.max_batch = max_batch
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nextbest-scorer")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the consumer task on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._consume())

    async def close(self) -> None:
        """Stop the consumer; queries still queued get a cancelled future."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while not self._queue.empty():
            self._queue.get_nowait()[1].cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
        gc.unfreeze()  # what was frozen may be garbage now (e.g. an app of a test process): collectable again

    async def rank(self, query: RankQuery) -> Ranking | ServingError:
        """The ranking of ``query`` or the ``ServingError`` it ends with (raises a store failure)."""
        return (await self.rank_many([query]))[0]

    async def rank_many(self, queries: Sequence[RankQuery]) -> list[Ranking | ServingError]:
        """``rank`` of several queries (queued together, so usually scored in one batch)."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in queries]
        for query, future in zip(queries, futures, strict=True):
            self._queue.put_nowait((query, future))
        return list(await asyncio.gather(*futures))

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        batches = 0
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            queries = [query for query, _ in batch]
            try:
                results = await loop.run_in_executor(self._executor, self.scorer.rank_many, queries)
            except Exception as exc:  # noqa: BLE001 - e.g. the store is down: every query of the batch fails
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            batches += 1
            if batches in (1, FREEZE_AFTER_BATCHES):
                freeze_long_lived()
