"""A keyed work queue in the style of client-go's: dedup, one worker per key at a
time, capped exponential backoff with jitter on failure (kube/backoff.py).

The reconcile vocabulary, the same for every kind (kopf's and controller-runtime's):
- return None: done; run again when something changes (a watch event, the resync);
- return Requeue(after): done; run again after that long (a refresh, a poll);
- raise TemporaryError: failed, and the status already says why; the queue retries
  with backoff. Any other exception is a failure nobody reported yet: the caller's
  wrapper reports it, and the queue retries with the same backoff.
A rejected spec (permanent until it changes) is reported in status and returns None.
The queue alone owns the backoff: one failure count per key, reset on success.

Why not kopf's own create/update handlers: they persist progress in annotations on
every resource (writes on every change and on restart), and appinfra must send zero
writes when nothing changed. kopf still does the watching; this does the scheduling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from appinfra.kube.backoff import Backoff

__all__ = ["Backoff", "Requeue", "TemporaryError", "WorkQueue"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Requeue:
    """Returned by a reconcile that wants to run again later (e.g. a refresh)."""

    after: float


class TemporaryError(Exception):
    """The reconcile failed for now and has said why in the resource's status (its
    message is that status message, free of values): retried with backoff."""


Reconcile = Callable[[Hashable], Awaitable[Requeue | None]]


class WorkQueue:
    """`group` maps a key to its tenant (the namespace): one tenant may occupy at most
    `workers - reserved` workers at once, so a namespace whose reconciles are slow (a
    hostile template waits its turn in the render pool) cannot hold every worker while
    another namespace's work waits. Keys over the limit wait, in order, for their own
    tenant's next free slot; with one tenant only, `reserved` workers stay idle."""

    def __init__(
        self,
        reconcile: Reconcile,
        workers: int = 8,
        backoff: Backoff | None = None,
        group: Callable[[Hashable], Hashable] | None = None,
        reserved: int | None = None,
    ):
        self._reconcile = reconcile
        self._workers = workers
        self._group = group
        self._per_group = max(1, workers - (workers // 4 if reserved is None else reserved))
        self._running: dict[Hashable, int] = {}
        self._parked: dict[Hashable, list[Hashable]] = {}
        self.backoff = backoff or Backoff()
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._again: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: Hashable, after: float = 0) -> None:
        """Schedule `key`; a sooner request replaces a later one."""
        loop = asyncio.get_running_loop()
        if after > 0:
            timer = self._timers.get(key)
            due = loop.time() + after
            if timer is not None and timer.when() <= due:
                return
            if timer is not None:
                timer.cancel()
            self._timers[key] = loop.call_at(due, self._fire, key)
            return
        self._fire(key)

    def _fire(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._active:
            self._again.add(key)  # re-run once the current pass finishes
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def _release(self, tenant: Hashable) -> None:
        """One of `tenant`'s reconciles ended: its next parked key may go."""
        left = self._running[tenant] - 1
        if left:
            self._running[tenant] = left
        else:
            del self._running[tenant]
        parked = self._parked.get(tenant)
        if parked:
            self._queue.put_nowait(parked.pop(0))
            if not parked:
                del self._parked[tenant]

    def forget(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self.backoff.reset(key)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for timer in self._timers.values():
            timer.cancel()

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            tenant = self._group(key) if self._group else None
            if tenant is not None and self._running.get(tenant, 0) >= self._per_group:
                self._parked.setdefault(tenant, []).append(key)  # still counted as queued
                continue
            self._queued.discard(key)
            self._active.add(key)
            if tenant is not None:
                self._running[tenant] = self._running.get(tenant, 0) + 1
            try:
                result = await self._reconcile(key)
            except Exception:
                # The reconcile logged the failure itself (with its context); schedule the retry.
                delay = self.backoff.next_delay(key)
                log.debug("retrying %s in %.1fs", key, delay)
                self.add(key, delay)
            else:
                self.backoff.reset(key)
                if result is not None:
                    self.add(key, result.after)
            finally:
                self._active.discard(key)
                if tenant is not None:
                    self._release(tenant)
                if key in self._again:
                    self._again.discard(key)
                    self._fire(key)
