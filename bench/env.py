"""The servers the bench runs (the same classes the e2e tests use), the machine it runs on,
and the operator's memory as the kernel reports it."""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import hvac
import yaml
from tests.e2e.conftest import ControlPlane, Operator
from tests.support.kube import Cluster
from tests.support.servers import REPO, ServerProcess, free_port, http_ok, tool

SYSTEM_NAMESPACE = "appinfra-system"
STORE = "bench-vault"
TOKEN_SECRET = "bao-token"  # the OpenBao token, for appinfra's store and ESO's


class Processes:
    """Everything the bench started, stopped in reverse order (also on errors and Ctrl-C)."""

    def __init__(self) -> None:
        self.started: list[ServerProcess] = []
        self.others: list[subprocess.Popen[bytes]] = []

    def add(self, proc: ServerProcess) -> ServerProcess:
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for popen in reversed(self.others):
            if popen.poll() is None:
                popen.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(10)
                if popen.poll() is None:
                    popen.kill()
                    popen.wait(10)
        for proc in reversed(self.started):
            with contextlib.suppress(Exception):
                proc.stop()


def start_controlplane(workdir: Path, procs: Processes) -> tuple[int, Cluster]:
    """The control plane, started; returns its supervisor's pid (the session every
    control-plane process runs in: what the bench pins and counts CPU by) and its Cluster."""
    plane = ControlPlane(workdir)
    try:
        plane.start()
    finally:
        if plane.process is not None:
            procs.add(plane.process)
    assert plane.process is not None and plane.process.proc is not None
    return plane.process.proc.pid, Cluster(plane.kubeconfig)


def install_crds(cluster: Cluster) -> None:
    crds = str(REPO / "crds")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", crds)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)


@dataclass
class OpenBao:
    address: str
    token: str
    process: ServerProcess
    audit_log: Path | None = None

    def client(self) -> hvac.Client:
        return hvac.Client(url=self.address, token=self.token)


def start_openbao(workdir: Path, procs: Processes, *, audit: bool = False) -> OpenBao:
    """An OpenBao dev server; with `audit`, its file audit device logs every request it
    serves (declared in a config file: OpenBao 2.x refuses to enable audit devices
    through its API)."""
    port = free_port()
    token = secrets.token_hex(16)
    home = workdir / "openbao"
    home.mkdir(parents=True, exist_ok=True)
    address = f"http://127.0.0.1:{port}"
    argv = [tool("bao"), "server", "-dev", f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}"]  # fmt: skip
    audit_log = None
    if audit:
        audit_log = home / "audit.log"
        config = home / "audit.hcl"
        config.write_text(
            f'audit "file" "file" {{\n  options = {{\n    file_path = "{audit_log}"\n  }}\n}}\n'
        )
        argv.append(f"-config={config}")
    proc = procs.add(
        ServerProcess("openbao", argv, home, env={"HOME": str(home), "BAO_ADDR": address})
    )
    proc.start()
    proc.wait_ready(lambda: http_ok(f"{address}/v1/sys/health"), 60)
    return OpenBao(address, token, proc, audit_log)


def token_secret(namespace: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": TOKEN_SECRET, "namespace": namespace},
        "stringData": {"token": token},
    }  # fmt: skip


def operator_config(bao: OpenBao, namespaces_glob: str) -> dict[str, Any]:
    """One OpenBao store with token auth; the token comes from a Secret, as in production."""
    token_ref = {"namespace": SYSTEM_NAMESPACE, "name": TOKEN_SECRET, "key": "token"}
    vault = {
        "address": bao.address,
        "kv": {"mount": "secret", "version": 2},
        "auth": {"token": {"secretRef": token_ref}},
    }
    return {
        "secretStores": {
            STORE: {"vault": vault, "allowedNamespaces": [namespaces_glob],
                    "keyPrefix": "{namespace}/"},
        },
        "rateLimit": {"defaultEnforcement": "IngressNginx"},
    }  # fmt: skip


def write_operator_config(workdir: Path, config: dict[str, Any]) -> None:
    # The path the e2e Operator class passes to --config.
    (workdir / "operator-config.yaml").write_text(yaml.safe_dump(config))


class BenchOperator:
    """`appinfra run` through the e2e harness's Operator class, with the bench's env."""

    def __init__(self, cluster: Cluster, workdir: Path, procs: Processes, name: str, **env: str):
        self.op = Operator(cluster, workdir, name)
        self.op.process.env.update(env)
        self.procs = procs
        self.started_at = 0.0
        self.ready_at = 0.0

    @property
    def pid(self) -> int:
        assert self.op.process.proc is not None
        return self.op.process.proc.pid

    @property
    def metrics_port(self) -> int:
        return self.op.metrics_port

    def spawn(self) -> BenchOperator:
        """Start without waiting (the cold-start clock starts here)."""
        self.procs.add(self.op.process)
        self.started_at = time.monotonic()
        self.op.process.start()
        return self

    def healthy(self) -> bool:
        if not self.op.process.running():
            raise RuntimeError(f"operator exited; log:\n{self.op.process.log_tail()}")
        try:
            ok = http_ok(f"http://127.0.0.1:{self.op.health_port}/healthz")
        except OSError:  # not listening yet
            return False
        if ok and not self.ready_at:
            self.ready_at = time.monotonic()
        return ok

    def wait_healthy(self, timeout: float = 60) -> BenchOperator:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return self
            time.sleep(0.1)
        raise TimeoutError(f"operator not healthy after {timeout:.0f}s")

    def memory(self) -> dict[str, float]:
        """VmHWM (peak RSS) and VmRSS in MiB, from /proc/<pid>/status."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) / 1024
        return out

    def log_tail(self, lines: int = 40) -> str:
        return self.op.process.log_tail(lines)

    def stop(self) -> None:
        self.op.stop()


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: [state, ppid, pgrp, session, ...]."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads), in seconds."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _label(pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    for name in (b"kube-apiserver", b"kube-controller-manager"):
        if name in argv[:2]:
            return name.decode()
    return "etcd+supervisor" if b"up" in argv[:2] else Path(argv[0].decode()).name


def cpu_by_process(sessions: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of every process in the given sessions (the servers run in their
    own sessions), labelled by role, plus this process."""
    wanted = {sid: name for name, sid in sessions.items()}
    out: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        with contextlib.suppress(OSError, IndexError, ValueError):
            sid = int(_stat_fields(pid)[3])
            if sid in wanted:
                label = _label(pid) if wanted[sid] == "controlplane" else wanted[sid]
                out[label] = out.get(label, 0.0) + cpu_seconds(pid)
    times = os.times()
    out["bench"] = times.user + times.system
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 1) for k, v in sorted(after.items())}


def revision() -> str:
    """The commit measured, with "+modified" when operator/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "operator"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + ("+modified" if dirty else "")  # fmt: skip


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        versions = subprocess.run(
            [tool("controlplane"), "version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        versions = f"unknown ({exc})"

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kubernetes_client": version("kubernetes"),
        "kopf": version("kopf"),
        "appinfra": version("appinfra"),
        "controlplane": dict(line.split(" ", 1) for line in versions.splitlines() if " " in line),
    }


def pin_session(sid: int, cpus: set[int]) -> int:
    """Pin every thread of every process in a session to `cpus` (a thread's affinity is
    its own; threads started later inherit their creator's). Returns the threads pinned."""
    pinned = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(_stat_fields(int(entry.name))[3]) != sid:
                continue
            for task in (entry / "task").iterdir():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task.name), cpus)
                    pinned += 1
    return pinned


def pin_self(cpus: set[int]) -> None:
    """Pin this process (every thread) to `cpus`; the processes it starts inherit it."""
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)
