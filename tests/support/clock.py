"""A fake clock for code that takes its clock as an argument (`clock: () -> float`)."""

from __future__ import annotations


class Clock:
    """Stands still until a test moves it (`clock.now += 30`)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
