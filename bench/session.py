"""One bench run from start to report, shared by `make bench`, `make bench-scale` and
`make bench-peers`: a work directory, every process stopped whatever happens (errors,
Ctrl-C, SIGTERM), the report written as JSON (also when a phase failed: what was
measured until then) and printed as a table."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import env

RESULTS = Path(__file__).resolve().parent / "results"
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> float:
    """Poll `check` until true; returns the monotonic time it was first seen true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_all(
    done: Callable[[], int], total: int, what: str, timeout: float, slow: float = 2.0
) -> float:
    """Monotonic time `done()` first reached `total`, with progress every 10 s. Polled every
    `slow` s, then every 0.5 s past 90% (each poll is a LIST the API server pays for, in
    CPU the measured tool competes for; the end needs precision). `done` raises to stop
    early (a tool that died)."""
    deadline = time.monotonic() + timeout
    last_report = time.monotonic()
    while time.monotonic() < deadline:
        count = done()
        now = time.monotonic()
        if count >= total:
            return now
        if now - last_report >= 10:
            say(f"  {count}/{total} {what}")
            last_report = now
        time.sleep(0.5 if count >= 0.9 * total else slow)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {total} {what}")


def stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


Work = Callable[[Path, env.Processes, str], None]


def measured(
    name: str,
    report: dict[str, Any],
    work: Work,
    table: Callable[[dict[str, Any]], str],
    *,
    keep: bool = False,
) -> int:
    """Run `work(workdir, processes, stamp)`, which fills `report["results"]` as it goes;
    write bench/results/<name>-<stamp>.json and <name>-latest.json (plain <stamp>.json
    and latest.json without a name), print `table(report)`. Returns the exit status."""
    when = stamp()
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"appinfra-{name or 'bench'}-"))
    procs = env.Processes()

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    report = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": env.machine(),
        "revision": env.revision(),
        **report,
        # Other work on the machine skews every number: recorded so a noisy run is visible.
        "loadavg_start": os.getloadavg(),
    }
    report.setdefault("results", {})
    status = 0
    try:
        work(workdir, procs, when)
    except KeyboardInterrupt:
        report["error"] = "interrupted"
        status = 130
    except Exception as exc:
        traceback.print_exc()
        report["error"] = f"{type(exc).__name__}: {exc}"
        status = 1
    finally:
        # Cleanup is bounded (each stop escalates to SIGKILL); a second Ctrl-C must not
        # abandon servers that run in their own sessions.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("stopping every process the bench started")
        procs.stop_all()
        report["total_seconds"] = round(time.monotonic() - T0, 1)
        report["loadavg_end"] = os.getloadavg()
        report["revision_end"] = env.revision()
        text = json.dumps(report, indent=2) + "\n"
        prefix = f"{name}-" if name else ""
        out = RESULTS / f"{prefix}{when}.json"
        out.write_text(text)
        (RESULTS / f"{prefix}latest.json").write_text(text)
        if keep:
            say(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(report))
    print(f"\nresults: {out}")
    return status
