"""Sampling the operator with py-spy (optional: `uv pip install --python .venv py-spy`),
and turning the collapsed stacks into the top functions by self and inclusive samples."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.servers import VENV_BIN

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)\)$")


def find() -> str | None:
    candidate = VENV_BIN / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


class Recorder:
    def __init__(self, exe: str, pid: int, out: Path, rate: int = 100):
        self.out = out
        self.log = out.with_suffix(".log")
        self.argv = [
            exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
            "--nolineno", "--nonblocking", "--gil", "--output", str(out),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Recorder:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return self

    def stop(self) -> None:
        """SIGINT makes py-spy write its output and exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _package(file: str) -> str:
    """A coarse owner of a frame: appinfra, a third-party distribution, or stdlib:<module>.
    py-spy shortens paths to what follows site-packages/ or the stdlib directory."""
    for marker in ("site-packages/", "/operator/", "/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    top = file.lstrip("/").split("/", 1)[0].removesuffix(".py")
    return f"stdlib:{top}" if top in sys.stdlib_module_names else top


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    file = match["file"]
    for marker in ("site-packages/", "/operator/", "/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match['func']} ({file})"


def summarize(raw: Path, top: int = 20) -> dict[str, Any]:
    """Top functions by self samples (the frame on CPU) and by inclusive samples (anywhere
    on the stack), plus the share of self samples per package."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        # py-spy puts the thread/process label first when asked; real frames have "(file)".
        frames = [f for f in frames if _FRAME.match(f)]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        self_counts[_short(leaf)] += count
        match = _FRAME.match(leaf)
        packages[_package(match["file"]) if match else "?"] += count
        for frame in set(frames):
            incl_counts[_short(frame)] += count
            match = _FRAME.match(frame)
            if match and _package(match["file"]) == "appinfra":
                ours[_short(frame)] += count

    def pct(items: list[tuple[str, int]]) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": n, "percent": round(100 * n / total, 1)}
            for name, n in items
        ]

    return {
        "samples": total,
        "self": pct(self_counts.most_common(top)),
        "inclusive": pct(incl_counts.most_common(top)),
        "appinfra_inclusive": pct(ours.most_common(top)),
        "packages": pct(packages.most_common(15)),
    }
