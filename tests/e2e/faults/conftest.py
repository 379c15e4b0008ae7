"""Faults: the operator crashes, the API server goes away, a secret store goes down or
throttles, users send hostile input. Every test asserts that nothing is lost.

These tests break servers, so they never touch the session's shared ones: they run on
their own control plane (restartable on the same data and port), their own OpenBao
dev server (on a fixed port, so a restart comes back at the same address), their own
moto behind a fault-injecting proxy, and their own `appinfra run` processes, each
scoped to its test's namespaces with `--namespace`. Those servers are package-scoped:
started once for every test file here, and stopped after the last one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import STARTED, ControlPlane, Operator
from tests.support.faults import (
    BAO_TOKEN,
    SYSTEM,
    Bao,
    Launch,
    Obj,
    forget,
    namespaces,
    new_operator,
    stop_operator,
)
from tests.support.kube import Cluster
from tests.support.moto import start_moto
from tests.support.objects import apply
from tests.support.servers import REPO, ServerProcess, free_port, tool


@pytest.fixture(scope="package")
def faults_dir(workdir: Path) -> Path:
    path = workdir / "faults"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="package")
def plane(faults_dir: Path) -> Iterator[ControlPlane]:
    """A second control plane only these tests use (and stop, and restart)."""
    own = ControlPlane(faults_dir)
    own.start()
    try:
        yield own
    finally:
        own.stop()
        forget(own.process)


@pytest.fixture(scope="package")
def kube(plane: ControlPlane) -> Cluster:
    """Our control plane with the CRDs Established and the stores' credential Secrets."""
    cluster = Cluster(plane.kubeconfig)
    crds = str(REPO / "crds")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", crds)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
    namespaces(cluster, SYSTEM)
    credentials = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": SYSTEM},
         "stringData": data}
        for name, data in (("bao-token", {"token": BAO_TOKEN}),
                           ("aws-keys", {"id": "testing", "secret": "testing"}))
    ]  # fmt: skip
    apply(cluster, *credentials)
    return cluster


@pytest.fixture(scope="package")
def bao(faults_dir: Path) -> Iterator[Bao]:
    port = free_port()
    home = faults_dir / "openbao"
    home.mkdir(exist_ok=True)
    argv = [tool("bao"), "server", "-dev", f"-dev-root-token-id={BAO_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{port}"]  # fmt: skip
    address = f"http://127.0.0.1:{port}"
    env = {"HOME": str(home), "BAO_ADDR": address}
    server = Bao(address, ServerProcess("openbao-faults", argv, home, env=env))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        forget(server.process)


@pytest.fixture(scope="package")
def moto_endpoint(faults_dir: Path) -> Iterator[str]:
    server = start_moto(faults_dir, "moto-faults", track=STARTED)
    try:
        yield server.endpoint
    finally:
        server.process.stop()
        forget(server.process)


@pytest.fixture
def launch(kube: Cluster, faults_dir: Path) -> Iterator[Launch]:
    """Start operators for one test; every one started is stopped after it."""
    started: list[Operator] = []

    def start(name: str, watch: list[str], config: Obj | None = None, **env: str) -> Operator:
        op = new_operator(kube, faults_dir, name, watch, config or {}, **env)
        started.append(op)
        return op.start()

    yield start
    for op in started:
        stop_operator(op)
