"""`make run` on a machine with no cluster, as a new user meets it (README "Quick start").

hack/run.sh runs in a subprocess with KUBECONFIG pointing nowhere and HOME in a fresh
temporary directory, so neither the developer's kube context nor ~/.kube can help. It must
start the local control plane and an OpenBao dev server seeded for examples/, then the
operator; `kubectl apply -f examples/` must end with the SecretBinding Synced and its Secret
written; SIGINT to the script alone must stop every process it started, grandchildren
(kube-apiserver, bao, the template workers) included. Uses none of the session servers.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.kube import Cluster
from tests.support.servers import REPO, free_port, http_ok, wait_until

EXAMPLE_BINDING = "payments-db"  # examples/21-secretbinding.yaml, namespace shop
EXPECTED_KEYS = {"DB_PASSWORD", "API_KEY", "API_URL", "DSN"}  # data, dataFrom, template


@dataclass(frozen=True)
class Proc:
    pid: int
    start_time: str  # /proc/PID/stat field 22: tells a reused pid from the original
    command: str


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live, non-zombie process; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    if fields[0] == "Z":
        return None
    return int(fields[1]), fields[19]


def _descendants(root: int) -> list[Proc]:
    """Every live process below `root`, found by parent pid (the control plane puts its
    components in process groups of their own, so a group would miss them)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            parents.setdefault(stat[0], []).append(int(entry.name))
    found: list[Proc] = []
    todo = list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        stat = _stat(pid)
        if stat is None:
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            continue
        found.append(Proc(pid, stat[1], command.strip()))
        todo.extend(parents.get(pid, []))
    return found


def _alive(proc: Proc) -> bool:
    stat = _stat(proc.pid)
    return stat is not None and stat[1] == proc.start_time


@dataclass
class RunSh:
    proc: subprocess.Popen[bytes]
    run_dir: Path
    health_port: int
    log: Path
    children: list[Proc] = field(default_factory=list)  # seen while running; killed after


@pytest.fixture
def run_sh(tmp_path: Path) -> Iterator[RunSh]:
    home = tmp_path / "home"
    home.mkdir()
    run_dir = tmp_path / "run"
    health_port = free_port()
    log = tmp_path / "run.log"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KUBE", "APPINFRA_", "BAO_", "VAULT_"))
    }
    env.update(
        {
            "HOME": str(home),
            "KUBECONFIG": str(tmp_path / "nowhere" / "kubeconfig"),
            "APPINFRA_RUN_DIR": str(run_dir),
        }
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(REPO / "hack" / "run.sh"), "--health-port", str(health_port),
             "--metrics-port", "0"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    run = RunSh(proc, run_dir, health_port, log)
    try:
        yield run
    finally:
        # Whatever the test saw, nothing may outlive it, even when hack/run.sh is broken.
        if proc.poll() is None:
            run.children += _descendants(proc.pid)
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for leftover in run.children:
            if _alive(leftover):
                os.kill(leftover.pid, signal.SIGKILL)


def test_make_run_without_a_cluster_serves_the_examples_and_stops_on_ctrl_c(
    run_sh: RunSh,
) -> None:
    proc, run_dir, health_port, log = run_sh.proc, run_sh.run_dir, run_sh.health_port, run_sh.log

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"hack/run.sh exited ({proc.returncode}):\n{log.read_text()}")
        return http_ok(f"http://127.0.0.1:{health_port}/healthz")

    wait_until(ready, 150, "hack/run.sh: control plane, OpenBao and the operator")
    config = (run_dir / "operator-config.yaml").read_text()
    assert "127.0.0.1" in config, "the operator must use the local OpenBao, not the example's"

    cluster = Cluster(run_dir / "kubeconfig")
    cluster.kubectl("apply", "-f", str(REPO / "examples"))
    cluster.kubectl(
        "wait", "--for=condition=Synced", "--timeout=60s", "-n", "shop",
        f"secretbinding/{EXAMPLE_BINDING}",
    )  # fmt: skip
    secret = cluster.kubectl_json("get", "secret", EXAMPLE_BINDING, "-n", "shop")
    assert set(secret["data"]) == EXPECTED_KEYS
    # The seeded password reached the template: the Secret is the examples' whole story.
    dsn = base64.b64decode(secret["data"]["DSN"]).decode()
    assert dsn.startswith("postgresql://app:") and "{{" not in dsn

    children = _descendants(proc.pid)
    run_sh.children.extend(children)
    commands = " ".join(child.command for child in children)
    for expected in ("controlplane up", "kube-apiserver", "bao server", "appinfra run"):
        assert expected in commands, f"{expected!r} is not running under hack/run.sh"

    # SIGINT to the script alone (a terminal's Ctrl-C reaches the whole group; this is the
    # stricter case): its trap must stop everything it started.
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(60)

    def all_gone() -> bool:
        return not [child for child in children if _alive(child)]

    try:
        wait_until(all_gone, 30, "every process hack/run.sh started to exit")
    except TimeoutError:
        left = "\n".join(child.command for child in children if _alive(child))
        raise AssertionError(f"still running after SIGINT:\n{left}") from None
    assert not (run_dir / "kubeconfig").exists(), "the control plane did not shut down cleanly"
