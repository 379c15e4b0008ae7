"""A process-wide gate on writes to the API server, closed while this replica may not
be the leader.

Stopping the workers is not enough to keep a replica that lost (or may have lost)
the leader Lease from writing: a reconcile already running, a retry, or an Event in
the poster's queue can still send a write after the workers were told to stop, at a
time a standby may already lead. Every mutating request goes through
`Kube.request`, which asks this gate first, so from the moment the elector closes
it this process sends no further write (one already on the wire cannot be recalled).

Lease requests are always let through: they are how leadership is acquired, renewed
and released. Everything else is refused while the gate is closed, Events included:
they are harmless from a non-leader, but "a replica that is not the leader writes
nothing" is easier to check and to trust without exceptions.

The gate is open by default, so a single replica run without leader election writes
as before; the elector closes it as soon as it starts and opens it only while leading.
"""

from __future__ import annotations

import threading

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Leases are how leadership is taken and kept: never gated.
_EXEMPT_PREFIX = "/apis/coordination.k8s.io/"


class WriteGate:
    """Thread-safe: reconciles run in worker threads, the elector on the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = True
        self._why = ""

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._open

    def open(self) -> None:
        with self._lock:
            self._open, self._why = True, ""

    def close(self, why: str) -> None:
        """Refuse writes from now on; `why` (no user values) goes into each refusal."""
        with self._lock:
            self._open, self._why = False, why

    def refusal(self, method: str, path: str) -> str | None:
        """None if this request may be sent, else why not (for the caller's error)."""
        if method.upper() not in MUTATING or path.startswith(_EXEMPT_PREFIX):
            return None
        with self._lock:
            if self._open:
                return None
            return f"write not sent: {self._why}"


WRITES = WriteGate()
