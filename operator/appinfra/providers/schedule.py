"""When a SecretBinding refreshes: on a per-key schedule, so reads stay one per key.

The target is "remote reads per refresh window = distinct remote keys, not bindings".
Sharing a read only helps bindings that ask within the same window (see shared.py);
bindings of one key that each refresh `interval` after their own last sync, jittered
on their own, drift apart and read the key several times per window.

So refreshes of a key fall on a grid: the moments `phase + k * interval`, where the
phase comes from a hash of the store and key. Every binding of that key refreshes at
the same grid point and all but the first are served the first one's read. The
phase spreads different keys evenly over the interval (the jitter: a restart does
not align every binding on one second), and it is the same in every operator
process, so it survives restarts and leader changes.

The next grid point is taken at least half an interval after the read the binding was
served (RemoteSecret.read_at, identical for everyone sharing it): early enough that no
refresh comes later than 1.5 intervals, late enough that the refresh reads afresh
(a shared result is served for at most half an interval). The first refresh after a
sync is therefore between 0.5 and 1.5 intervals later; every one after that, exactly
one interval.
"""

from __future__ import annotations

import hashlib
import math


def phase(store: str, key: str, interval: float) -> float:
    """The key's offset into the interval, in [0, interval): stable across processes."""
    digest = hashlib.sha256(f"{store}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * interval


def next_refresh(store: str, key: str, interval: float, read_at: float, now: float) -> float:
    """Epoch seconds of the next refresh of a binding served a read of `key` at `read_at`.

    Never before `now`: a binding that got to its sync late (a backlog) refreshes at the
    next grid point, not in a burst.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    earliest = max(read_at + interval / 2, now)
    offset = phase(store, key, interval)
    steps = math.ceil((earliest - offset) / interval)
    return offset + steps * interval
