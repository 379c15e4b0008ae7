import asyncio
from collections.abc import Hashable

from appinfra.kube.workqueue import Backoff, Requeue, WorkQueue


def test_backoff_is_capped_and_jittered() -> None:
    backoff = Backoff(base=0.5, cap=10)
    delays = [backoff.next_delay("k") for _ in range(20)]
    # Equal jitter: the n-th delay lies in [c/2, c], c = min(cap, base * 2**n).
    for n, delay in enumerate(delays):
        ceiling = min(10, 0.5 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) > 1
    backoff.reset("k")
    assert 0.25 <= backoff.next_delay("k") <= 0.5


def test_bursts_collapse_and_failures_retry() -> None:
    calls: list[Hashable] = []
    attempts = {"flaky": 0}

    async def reconcile(key: Hashable) -> Requeue | None:
        calls.append(key)
        await asyncio.sleep(0.01)
        if key == "flaky":
            attempts["flaky"] += 1
            if attempts["flaky"] < 3:
                raise RuntimeError("transient")
        return None

    async def main() -> None:
        queue = WorkQueue(reconcile, workers=4, backoff=Backoff(base=0.01, cap=0.05))
        queue.start()
        for _ in range(50):
            queue.add("a")
        queue.add("flaky")
        await asyncio.sleep(0.5)
        await queue.stop()

    asyncio.run(main())
    assert calls.count("a") <= 2  # 50 adds, at most one running plus one queued
    assert attempts["flaky"] == 3


def test_requeue_after_runs_again() -> None:
    calls: list[Hashable] = []

    async def reconcile(key: Hashable) -> Requeue | None:
        calls.append(key)
        return Requeue(0.05) if len(calls) < 3 else None

    async def main() -> None:
        queue = WorkQueue(reconcile, workers=1)
        queue.start()
        queue.add("k")
        await asyncio.sleep(0.4)
        await queue.stop()

    asyncio.run(main())
    assert calls == ["k", "k", "k"]


def test_one_namespace_cannot_hold_every_worker() -> None:
    """Namespace a's reconciles never finish on their own; b's, queued after them, still
    run, because a may hold at most workers - workers // 4 of them."""
    started: list[Hashable] = []
    release = asyncio.Event()

    async def reconcile(key: Hashable) -> Requeue | None:
        started.append(key)
        if key[0] == "a":  # type: ignore[index]
            await release.wait()
        return None

    async def main() -> None:
        queue = WorkQueue(reconcile, workers=4, group=lambda key: key[0])  # type: ignore[index]
        queue.start()
        for i in range(6):
            queue.add(("a", f"slow-{i}"))
        queue.add(("b", "quick"))
        await asyncio.sleep(0.2)
        assert ("b", "quick") in started
        assert sum(1 for k in started if k[0] == "a") == 3  # type: ignore[index]
        release.set()  # a's parked keys then run in order
        await asyncio.sleep(0.2)
        assert [k for k in started if k[0] == "a"] == [("a", f"slow-{i}") for i in range(6)]  # type: ignore[index]
        await queue.stop()

    asyncio.run(main())
