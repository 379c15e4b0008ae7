"""Resident memory of processes, read from /proc, and the peak of it while a block runs.

Memory bounds are asserted on what the kernel's OOM killer sees (VmRSS), sampled in a
thread, because a peak between two asserts is the one that kills a process.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Self


def status_bytes(pid: int | str, field: str = "VmRSS") -> int:
    """A /proc/<pid>/status size field in bytes (0 if the process is gone); pid may be
    "self"."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def parent_of(pid: int) -> int | None:
    """The parent's pid (None if the process is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # The command name, in parentheses, may hold spaces and ")": split after the last.
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def children() -> dict[int, list[int]]:
    """Every running process's children, by parent pid."""
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:
                out.setdefault(parent, []).append(int(entry.name))
    return out


def tree_rss(pid: int) -> int:
    """RSS of a process and all its descendants (the operator and its template workers)."""
    tree = children()
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += tree.get(current, [])
        total += status_bytes(current)
    return total


class PeakSampler:
    """The peak of `measure()` (bytes) while a with-block runs: measured at once, then
    every `interval` seconds in a daemon thread until the block ends."""

    def __init__(self, measure: Callable[[], int], interval: float) -> None:
        self.peak = 0
        self._measure = measure
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self._measure())
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
