"""The kube-apiserver's own CPU profile (its /debug/pprof endpoint, on by default) taken
while a phase runs, so the bench can say where the API server's time goes, not only
how much of it there is. Summarised with `go tool pprof -top` when Go is installed."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from kubeapi import Api


class ApiServerProfile:
    """A CPU profile of `seconds`, recorded in a background thread from `start()`."""

    def __init__(self, api: Api, seconds: int, out: Path):
        self.api, self.seconds, self.out = api, seconds, out
        self.error = ""
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ApiServerProfile:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            resp = self.api.raw(
                "GET", "/debug/pprof/profile", query={"seconds": str(self.seconds)},
                timeout=self.seconds + 60,
            )  # fmt: skip
            data = resp.data
            resp.release_conn()
            if resp.status != 200:
                self.error = f"HTTP {resp.status}"
                return
            self.out.write_bytes(data)
        except Exception as exc:  # a profile is optional: record why it is missing
            self.error = f"{type(exc).__name__}: {exc}"

    def summary(self, nodes: int = 25) -> dict[str, Any]:
        """Wait for the profile; the top functions by cumulative time (`-cum`)."""
        self._thread.join(self.seconds + 90)
        result: dict[str, Any] = {"file": str(self.out), "error": self.error}
        go = shutil.which("go")
        if self.error or not self.out.exists() or go is None:
            return result
        for order in ("flat", "cum"):
            top = subprocess.run(
                [go, "tool", "pprof", "-top", f"-nodecount={nodes}", f"-{order}", str(self.out)],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            result[order] = top.stdout.splitlines()
        return result
