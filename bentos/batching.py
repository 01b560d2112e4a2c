"""Coalescing of concurrent requests into one computation, on the worker's event loop, without a batching window.

A request's window is queued and the computation is scheduled a few turns of the loop later (``min_turns``, ~10 us
at no load); every request that reaches the queue before then joins the same batch, and the batch also waits (at
most ``max_wait``) for the requests already counted on their way in (:class:`Arrivals`). Under no load a batch is one
request, computed as soon as the loop gets to it; under load, the requests read while the previous batch ran share
the next one (7-8 windows with 8 clients). The features of a stack of windows cost little more than those of one
(``features.FeatureSpec.compute_latest_stacked``: ~0.9 ms for 8 windows against ~0.5 ms for one), which is what
lets a single worker keep up with its HTTP stack.

BentoML's own adaptive batching (``@bentoml.api(batchable=True)``) batches only an endpoint whose HTTP input is
itself a batch, and waits for a batch to fill (a latency window): neither fits a typed one-window method.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")

_arrival: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar("mlops_arrival", default=None)


class Arrivals:
    """Requests on their way to a coalescer: begun at the HTTP layer (headers read) and not yet submitted.

    Under load the requests of the clients' connections reach the worker a little apart: their bodies arrive in
    several reads, and each request takes a few turns of the loop from its headers to its method. A coalescer that
    knows some are on their way gives them those turns (up to its ``max_wait``) instead of computing without them.
    """

    def __init__(self) -> None:
        self.waiting = 0

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Count one request from here until it is submitted (or ends without reaching the coalescer)."""
        token = _arrival.set([False])
        self.waiting += 1
        try:
            yield
        finally:
            submitted = _arrival.get()
            _arrival.reset(token)
            if not (submitted and submitted[0]):
                self.waiting -= 1

    def submitted(self) -> None:
        """The current request reached its coalescer."""
        mark = _arrival.get()
        if mark is not None and not mark[0]:
            mark[0] = True
            self.waiting -= 1


class ArrivalsMiddleware:
    """Counts the requests to ``paths`` into ``arrivals`` (plain ASGI, in front of the service's routes)."""

    def __init__(self, app: Any, paths: Iterable[str], arrivals: Arrivals) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.arrivals = arrivals

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        with self.arrivals.request():
            await self.app(scope, receive, send)


class Coalescer(Generic[In, Out]):
    """Runs ``compute`` once for all the items submitted within a few turns of the event loop (at most ``max_size``).

    ``compute`` returns a result per item, or the exception that item's caller gets. If it raises for several items,
    each is computed alone (see :meth:`_answer`); if it raises for one, that item's caller gets the error. The
    computation runs in the context the coalescer was made in, not in the first caller's: what one request keeps in
    its context variables (e.g. its recorded client errors, see ``bentos.client_errors``) is not seen, or changed,
    on behalf of the others.
    """

    def __init__(
        self,
        compute: Callable[[list[In]], Sequence[Out | BaseException]],
        max_size: int = 64,
        observe: Callable[[int], None] | None = None,
        arrivals: Arrivals | None = None,
        max_wait: float = 0.002,
        min_turns: int = 3,
    ) -> None:
        self._compute = compute
        self._max_size = max_size
        self._observe = observe  # told each batch's size (e.g. a Prometheus histogram's observe)
        self._arrivals = arrivals
        self._max_wait = max_wait  # seconds a batch may wait for requests on their way
        # Loop turns a batch always gives: BentoML's TimeoutMiddleware runs each request's app in a task of its own,
        # so a request read in the turn a batch is scheduled reaches Arrivals (and the queue) two turns later. With
        # 8 clients, batches were 2 windows without these turns and 7-8 with them; at no load they cost ~10 us.
        self._min_turns = min_turns
        self._first_queued = 0.0
        self._queue: list[tuple[In, asyncio.Future[Out]]] = []
        self._scheduled = False
        self._turns = 0
        self._context = contextvars.copy_context()  # the computation's, whichever request schedules it
        self.batches = 0
        self.items = 0

    async def submit(self, item: In) -> Out:
        """The result of ``compute`` for ``item``, computed together with the other items queued this turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        if self._arrivals is not None:
            self._arrivals.submitted()
        if not self._queue:
            self._first_queued = loop.time()
        self._queue.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, context=self._context)
        return await future

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        self._turns += 1
        if self._turns < self._min_turns and len(self._queue) < self._max_size:
            # requests the loop has just read are a turn or two from being counted
            loop.call_soon(self._flush, context=self._context)
            return
        if (
            self._arrivals is not None
            and self._arrivals.waiting > 0
            and len(self._queue) < self._max_size
            and loop.time() - self._first_queued < self._max_wait
        ):
            # others are on their way: give the loop another turn to bring them
            loop.call_soon(self._flush, context=self._context)
            return
        self._turns = 0
        batch, self._queue = self._queue[: self._max_size], self._queue[self._max_size :]
        self._scheduled = bool(self._queue)
        if self._scheduled:
            loop.call_soon(self._flush, context=self._context)
        batch = [(item, future) for item, future in batch if not future.cancelled()]  # the client went away
        if not batch:
            return
        self.batches += 1
        self.items += len(batch)
        try:
            self._answer(batch)
        finally:  # whatever went wrong above, no caller is left waiting for the service's timeout
            for _, future in batch:
                if not future.done():
                    future.set_exception(RuntimeError("the coalesced computation ended without an answer"))
        if self._observe is not None:
            try:  # told after the answers: a broken metrics hook costs a log line, never a request
                self._observe(len(batch))
            except Exception:
                logger.warning("the coalescer's batch-size hook failed", exc_info=True)

    def _answer(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        """Compute the batch's results and hand each to its caller.

        If the pass over several items raises, each item is computed again alone: an item whose data breaks the
        shared computation gets its own error, and the others their answers (a bad window among concurrent requests
        costs its neighbours one more pass each, not a 500).
        """
        try:
            results = self._compute([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} items gave {len(results)} results")
        except Exception as error:
            if len(batch) > 1:
                logger.warning("a coalesced pass of %d items failed (%r): computing each alone", len(batch), error)
                for one in batch:
                    self._answer([one])
                return
            results = [error]
        for (_, future), result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):  # this item's own failure (e.g. its window is invalid)
                future.set_exception(result)
            else:
                future.set_result(result)

    @property
    def mean_batch_size(self) -> float:
        """Items per computation since start (``nan`` before the first)."""
        return self.items / self.batches if self.batches else float("nan")
