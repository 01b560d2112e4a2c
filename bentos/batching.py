"""Coalescing of concurrent requests into one computation, on the worker's event loop, without waiting.

A request's window is queued and the computation is scheduled for the loop's next turn; every request that
reaches the queue before then joins the same batch. Under no load a batch is one request, computed as soon as the
loop gets to it (no batching window, so no added latency); under load, requests that were parsed while the previous
batch ran share the next one. The features of a stack of windows cost little more than those of one
(``features.FeatureSpec.compute_latest_stacked``: ~1.1 ms for 8 windows against ~0.7 ms for one), which is what
lets a single worker keep up with its HTTP stack.

BentoML's own adaptive batching (``@bentoml.api(batchable=True)``) batches only an endpoint whose HTTP input is
itself a batch, and waits for a batch to fill (a latency window): neither fits a typed one-window method.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Coalescer(Generic[In, Out]):
    """Runs ``compute`` once for all the items submitted during one turn of the event loop (at most ``max_size``)."""

    def __init__(self, compute: Callable[[list[In]], Sequence[Out]], max_size: int = 64) -> None:
        self._compute = compute
        self._max_size = max_size
        self._queue: list[tuple[In, asyncio.Future[Out]]] = []
        self._scheduled = False
        self.batches = 0
        self.items = 0

    async def submit(self, item: In) -> Out:
        """The result of ``compute`` for ``item``, computed together with the other items queued this turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._queue.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._queue = self._queue[: self._max_size], self._queue[self._max_size :]
        self._scheduled = bool(self._queue)
        if self._scheduled:
            asyncio.get_running_loop().call_soon(self._flush)
        batch = [(item, future) for item, future in batch if not future.cancelled()]  # the client went away
        if not batch:
            return
        self.batches += 1
        self.items += len(batch)
        try:
            results = self._compute([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} items gave {len(results)} results")
        except Exception as error:  # every request of the batch gets it; none is left waiting
            for _, future in batch:
                future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)

    @property
    def mean_batch_size(self) -> float:
        """Items per computation since start (``nan`` before the first)."""
        return self.items / self.batches if self.batches else float("nan")
