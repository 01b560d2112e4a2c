"""The coalescer behind the one-window methods: one computation per turn of the loop, every caller answered."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bentos.batching import Coalescer
from features import DEFAULT_SPEC, Bars
from tests.conftest import make_bars


def test_items_submitted_together_are_computed_together() -> None:
    calls: list[list[int]] = []

    def double(items: list[int]) -> list[int]:
        calls.append(items)
        return [2 * i for i in items]

    coalescer: Coalescer[int, int] = Coalescer(double, max_size=3)

    async def main() -> tuple[list[int], int]:
        together = await asyncio.gather(*(coalescer.submit(i) for i in range(7)))
        alone = await coalescer.submit(10)
        return together, alone

    together, alone = asyncio.run(main())
    assert together == [0, 2, 4, 6, 8, 10, 12] and alone == 20
    assert calls == [[0, 1, 2], [3, 4, 5], [6], [10]]  # at most max_size at a time, nothing waits for a batch
    assert coalescer.batches == 4 and coalescer.mean_batch_size == pytest.approx(8 / 4)


def test_requests_read_in_the_same_turn_join_one_batch_though_each_runs_in_a_task_of_its_own() -> None:
    """BentoML's TimeoutMiddleware runs a request's app in a new task: it reaches the coalescer turns later."""
    sizes: list[int] = []
    coalescer: Coalescer[int, int] = Coalescer(lambda items: sizes.append(len(items)) or items)

    async def request(i: int) -> int:  # the request's task, which starts the app's task and waits for it
        return await asyncio.ensure_future(coalescer.submit(i))

    async def main() -> list[int]:
        first = asyncio.ensure_future(coalescer.submit(0))
        await asyncio.sleep(0)  # the first is queued; the others' tasks are created only now
        rest = await asyncio.gather(*(request(i) for i in range(1, 8)))
        return [await first, *rest]

    assert asyncio.run(main()) == list(range(8))
    assert sizes == [8]


def test_a_failing_computation_reaches_every_caller_and_the_next_batch_runs() -> None:
    def fail_below_four(items: list[int]) -> list[int]:
        if min(items) < 4:
            raise ValueError("below four")
        return items

    coalescer: Coalescer[int, int] = Coalescer(fail_below_four)

    async def main() -> tuple[list[object], int]:
        first = await asyncio.gather(*(coalescer.submit(i) for i in (1, 3)), return_exceptions=True)
        return first, await coalescer.submit(4)

    first, after = asyncio.run(main())
    assert [type(r) for r in first] == [ValueError, ValueError] and after == 4


def test_a_wrong_number_of_results_is_an_error_not_a_hang() -> None:
    coalescer: Coalescer[int, int] = Coalescer(lambda items: [])

    async def main() -> list[object]:
        return await asyncio.gather(*(coalescer.submit(i) for i in (1, 2)), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(main()))


def test_a_cancelled_request_is_dropped_from_its_batch() -> None:
    seen: list[list[int]] = []

    def record(items: list[int]) -> list[int]:
        seen.append(items)
        return items

    coalescer: Coalescer[int, int] = Coalescer(record)

    async def main() -> int:
        gone = asyncio.ensure_future(coalescer.submit(1))
        kept = asyncio.ensure_future(coalescer.submit(2))
        await asyncio.sleep(0)  # both queued
        gone.cancel()
        return await kept

    assert asyncio.run(main()) == 2 and seen == [[2]]


def test_stacked_features_equal_each_window_on_its_own() -> None:
    """Windows of different lengths and prices: the stacked pass gives every window's own row, bit for bit."""
    frames = [make_bars(DEFAULT_SPEC.min_bars + extra, seed=seed) for seed, extra in enumerate((0, 1, 48, 300))]
    windows = [Bars.from_frame(f) for f in frames]
    stacked = DEFAULT_SPEC.compute_latest_stacked(windows)
    alone = np.array([DEFAULT_SPEC.compute_latest(w) for w in windows])
    assert stacked.shape == (4, len(DEFAULT_SPEC.names))
    np.testing.assert_array_equal(stacked, alone)
    assert np.isfinite(stacked).all()


def test_a_batch_waits_for_requests_on_their_way_but_not_longer_than_max_wait() -> None:
    from bentos.batching import Arrivals

    arrivals = Arrivals()
    sizes: list[int] = []
    coalescer: Coalescer[int, int] = Coalescer(lambda items: sizes.append(len(items)) or items, arrivals=arrivals)

    async def request(i: int, turns: int) -> int:
        with arrivals.request():  # as the HTTP middleware does when the headers are read
            for _ in range(turns):  # reading the body, parsing, validating
                await asyncio.sleep(0)
            return await coalescer.submit(i)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(request(i, turns) for i, turns in enumerate((0, 3, 5, 8)))))

    assert asyncio.run(main()) == [0, 1, 2, 3]
    assert sizes == [4] and arrivals.waiting == 0  # one computation for the four, though they came turns apart

    stuck = Arrivals()
    late: Coalescer[int, int] = Coalescer(lambda items: items, arrivals=stuck, max_wait=0.01)

    async def alone() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        with stuck.request():  # a request that never reaches the coalescer (a slow client's body)
            started = loop.time()
            answer = await late.submit(7)
            return answer, loop.time() - started

    async def with_a_straggler() -> tuple[int, float]:
        ready = asyncio.Event()

        async def straggler() -> None:
            with stuck.request():
                ready.set()
                await asyncio.sleep(1)

        task = asyncio.ensure_future(straggler())
        await ready.wait()
        result = await alone()
        task.cancel()
        return result

    answer, waited = asyncio.run(with_a_straggler())
    assert answer == 7 and 0.01 <= waited < 0.5


def test_a_failing_metrics_hook_does_not_leave_the_batch_waiting() -> None:
    """The batch-size hook (a Prometheus histogram in the service) is told after the answers, and its failure is
    logged, not passed on: every caller gets its answer, none waits for the service's 60 s timeout."""

    def observe(size: int) -> None:
        raise RuntimeError("the metrics registry is broken")

    coalescer: Coalescer[int, int] = Coalescer(lambda items: [2 * i for i in items], observe=observe)

    async def main() -> list[int]:
        return list(await asyncio.wait_for(asyncio.gather(*(coalescer.submit(i) for i in range(3))), timeout=5))

    assert asyncio.run(main()) == [0, 2, 4]
    assert coalescer.batches == 1


def test_one_item_failing_a_shared_pass_fails_alone() -> None:
    """When the pass over several items raises (one item's data breaks the shared computation), each item is
    computed again on its own: the others get their answers, only the culprit its error."""
    calls: list[list[int]] = []

    def poisoned_by_three(items: list[int]) -> list[int]:
        calls.append(items)
        if 3 in items:
            raise ValueError("three breaks the pass")
        return [10 * i for i in items]

    coalescer: Coalescer[int, int] = Coalescer(poisoned_by_three)

    async def main() -> list[object]:
        return list(await asyncio.gather(*(coalescer.submit(i) for i in (1, 3, 5)), return_exceptions=True))

    one, three, five = asyncio.run(main())
    assert (one, five) == (10, 50)
    assert isinstance(three, ValueError) and str(three) == "three breaks the pass"
    assert calls == [[1, 3, 5], [1], [3], [5]]


def test_the_shared_computation_does_not_run_in_one_callers_context() -> None:
    """What the first request keeps in its context variables is neither seen nor changed on behalf of the others."""
    import contextvars

    owner: contextvars.ContextVar[str] = contextvars.ContextVar("owner", default="nobody")
    seen: list[str] = []
    coalescer: Coalescer[int, int] = Coalescer(lambda items: seen.append(owner.get()) or items)

    async def request(i: int) -> int:
        owner.set(f"request {i}")
        return await coalescer.submit(i)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(request(i) for i in range(3))))

    assert asyncio.run(main()) == [0, 1, 2] and seen == ["nobody"]
