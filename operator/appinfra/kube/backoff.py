"""The one backoff formula: capped exponential with "equal jitter".

Used by the work queue for every failed reconcile and by the informers for a failed
watch. After n consecutive failures of a key the delay is drawn from [c/2, c] with
c = min(cap, base * 2**n): retries of many keys that failed together spread out,
and none comes back sooner than half its ceiling.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base: float = 0.5
    cap: float = 60.0
    failures: dict[Hashable, int] = field(default_factory=dict)

    def next_delay(self, key: Hashable = None) -> float:
        """The delay before the next attempt for `key`; counts one more failure."""
        n = self.failures.get(key, 0)
        self.failures[key] = n + 1
        ceiling = min(self.cap, self.base * 2 ** min(n, 32))
        return random.uniform(ceiling / 2, ceiling)

    def reset(self, key: Hashable = None) -> None:
        """`key` succeeded: its next failure starts from `base` again."""
        self.failures.pop(key, None)
