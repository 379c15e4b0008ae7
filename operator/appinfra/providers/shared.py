"""Shared reads: one backend request per distinct read per window, however many bindings ask.

Many bindings often name the same remote key (one database password, fifty
consumers). The performance target is "remote reads per refresh window =
distinct remote keys, not bindings", and stores rate-limit us, so identical
reads are deduplicated twice: concurrent ones wait for the one in flight
(single-flight), and later ones within `window` seconds of its start get its
result. Errors are never kept past the read that produced them: callers that
were already waiting share it, the next caller tries again (their own backoff
spaces the retries), so a store that recovers is seen at once.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from appinfra.providers.base import RemoteSecret


@dataclass
class _Flight:
    """One read, in flight or done."""

    started: float
    done: threading.Event = field(default_factory=threading.Event)
    result: RemoteSecret | None = None
    error: BaseException | None = None


class SharedReads:
    """Single-flight plus a short-lived cache of successful reads, keyed by the caller."""

    def __init__(self, window: float, clock: Callable[[], float]) -> None:
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}
        self._last_sweep = clock()

    def get(
        self, key: Hashable, read: Callable[[], RemoteSecret], max_age: float | None = None
    ) -> RemoteSecret:
        """The result of `read`, shared with every identical `key` in flight or in the window.

        `max_age` shortens the window for one caller: a binding that refreshes every 10 s
        must not be served a result read 50 s ago for another binding.
        """
        with self._lock:
            now = self._clock()
            self._sweep(now)
            flight = self._flights.get(key)
            leader = (
                flight is None
                or self._expired(flight, now)
                or (
                    max_age is not None and flight.done.is_set() and now - flight.started >= max_age
                )
            )
            if leader:
                flight = self._flights[key] = _Flight(started=now)
        assert flight is not None
        if leader:
            return self._lead(key, flight, read)
        flight.done.wait()
        if flight.error is not None:
            # A fresh copy per waiter: raising one object from many threads would splice
            # their tracebacks together.
            raise copy.copy(flight.error)
        assert flight.result is not None
        return flight.result

    def _lead(
        self, key: Hashable, flight: _Flight, read: Callable[[], RemoteSecret]
    ) -> RemoteSecret:
        try:
            flight.result = read()
            return flight.result
        except BaseException as exc:
            flight.error = exc
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            raise
        finally:
            flight.done.set()

    def _expired(self, flight: _Flight, now: float) -> bool:
        return flight.done.is_set() and now - flight.started >= self._window

    def _sweep(self, now: float) -> None:
        """Drop expired results once per window, so keys nobody reads again do not pile up."""
        if now - self._last_sweep < self._window:
            return
        self._last_sweep = now
        for key in [k for k, f in self._flights.items() if self._expired(f, now)]:
            del self._flights[key]
