"""The two secret-sync tools `make bench-peers` compares, started and fed the same way:
appinfra (`appinfra run`, store in its config file) and External Secrets Operator
(bin/external-secrets, a SecretStore per namespace). Also OpenBao with its file audit
device, which is where the bench counts backend reads (not in either tool's metrics)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import env
import kubeapi
from kubeapi import Obj
from tests.support.servers import REPO, ServerProcess, free_port, http_ok

ESO_MODULE = "github.com/external-secrets/external-secrets"
ESO_API = "external-secrets.io/v1"
ESO_BIN = REPO / "bin" / "external-secrets"
kubeapi.PLURALS.update({"SecretStore": "secretstores", "ExternalSecret": "externalsecrets"})


def eso_version() -> str:
    """The ESO version bench/eso/go.mod requires (what bench/build-eso.sh built)."""
    for line in (REPO / "bench" / "eso" / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == ESO_MODULE:
            return parts[1]
    raise RuntimeError(f"bench/eso/go.mod does not require {ESO_MODULE}")


def eso_crd_files() -> list[Path]:
    """ESO's CRDs, from its module in the Go module cache (downloaded by the build)."""
    out = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", ESO_MODULE],
        cwd=REPO / "bench" / "eso", capture_output=True, text=True, timeout=120, check=True,
    ).stdout.strip()  # fmt: skip
    files = sorted((Path(out) / "config" / "crds" / "bases").glob("*.yaml"))
    return [f for f in files if f.name != "kustomization.yaml"]


# --- OpenBao's audit log ------------------------------------------------------------------


class AuditCounter:
    """Requests OpenBao served between two points, from its audit log (one "response"
    entry per request; the "request" entries are skipped). KV v2 reads are counted apart
    from everything else (token lookups, logins); the bench's own writes are left out."""

    def __init__(self, log: Path, mount: str = "secret"):
        self.log = log
        self.data_prefix = f"{mount}/data/"

    def mark(self) -> int:
        return self.log.stat().st_size

    def count(self, start: int, end: int | None = None) -> dict[str, int]:
        reads = other = 0
        paths: set[str] = set()
        with self.log.open("rb") as fh:
            fh.seek(start)
            data = fh.read() if end is None else fh.read(end - start)
        for line in data.splitlines():
            if not line.strip():
                continue
            entry: dict[str, Any] = json.loads(line)
            if entry.get("type") != "response":
                continue
            request = entry.get("request") or {}
            path, operation = request.get("path", ""), request.get("operation", "")
            if path.startswith(self.data_prefix):
                if operation == "read":
                    reads += 1
                    paths.add(path)
                continue  # writes to KV are the bench's own (setup, rotation)
            other += 1
        return {"kv_reads": reads, "distinct_keys_read": len(paths), "other_requests": other}


# --- External Secrets Operator ---------------------------------------------------------------


class Eso:
    """bin/external-secrets out of cluster, as fairly configured as it gets: the Vault token
    cache on, no webhook or cert-controller (not started), leader election off, the
    client's rate limit lifted (appinfra has none), `--concurrent` = appinfra's workers,
    and the reconcilers this work does not use (ClusterExternalSecret, PushSecret,
    ClusterPushSecret) off so their informers cost nothing."""

    def __init__(self, kubeconfig: Path, workdir: Path, workers: int):
        self.metrics_port = free_port()
        self.flags = [
            f"--concurrent={workers}",
            "--experimental-enable-vault-token-cache",
            "--enable-leader-election=false",
            "--client-qps=10000",
            "--client-burst=20000",
            "--enable-cluster-external-secret-reconciler=false",
            "--enable-push-secret-reconciler=false",
            "--enable-cluster-push-secret-reconciler=false",
        ]
        self.process = ServerProcess(
            "external-secrets",
            [str(ESO_BIN), f"--metrics-addr=127.0.0.1:{self.metrics_port}", *self.flags],
            workdir,
            env={"KUBECONFIG": str(kubeconfig)},
        )
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def start(self, procs: env.Processes) -> Eso:
        procs.add(self.process)
        self.started_at = time.monotonic()
        self.process.start()
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.process.wait_ready(lambda: _listening(url), 120)
        return self

    def healthy(self) -> None:
        if not self.process.running():
            raise RuntimeError(f"external-secrets exited; log:\n{self.process.log_tail()}")

    def stop(self) -> None:
        self.process.stop()


def _listening(url: str) -> bool:
    try:
        return http_ok(url)
    except OSError:
        return False


def eso_store(namespace: str, address: str) -> Obj:
    """The equivalent of appinfra's store: OpenBao KV v2 at `secret`, token auth from a
    Secret."""
    return {
        "apiVersion": ESO_API, "kind": "SecretStore",
        "metadata": {"name": env.STORE, "namespace": namespace},
        "spec": {"provider": {"vault": {
            "server": address, "path": "secret", "version": "v2",
            "auth": {"tokenSecretRef": {"name": env.TOKEN_SECRET, "key": "token"}},
        }}},
    }  # fmt: skip


def external_secret(namespace: str, name: str, key: str, refresh: str) -> Obj:
    """The equivalent of bench/objects.py's SecretBinding: the same two properties of the
    same key into the same target Secret, the same refresh interval."""
    return {
        "apiVersion": ESO_API, "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "refreshInterval": refresh,
            "secretStoreRef": {"name": env.STORE, "kind": "SecretStore"},
            "target": {"name": f"{name}-secret"},
            "data": [
                {"secretKey": "PASSWORD", "remoteRef": {"key": key, "property": "password"}},
                {"secretKey": "USER", "remoteRef": {"key": key, "property": "user"}},
            ],
        },
    }  # fmt: skip
