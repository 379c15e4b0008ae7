"""Leader election when the leader's API connection is cut: never two writers.

Two replicas, each its own ServiceAccount (so the API server tells them apart); the
leader reaches the API server through a TCP proxy that cuts it off. Writers are
counted where it matters, at the API server: its audit log records every write with
the user that sent it and when it arrived and completed. The operators' own counters
would not do: a replica that believes it stopped writing is exactly the failure.

The control plane here is this module's own (no nodes, and a leader cut off from it
must not disturb other tests), with the same audit policy as the session's
(tests/support/audit.py: write verbs only, at Metadata level, so no bodies).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.e2e.conftest import STARTED, Operator
from tests.e2e.test_operations import profile
from tests.support.audit import apiserver_args, service_account_user, writes_by
from tests.support.kube import Cluster
from tests.support.objects import apply, deployment, wait_condition
from tests.support.rbac import chart_rules, service_account_kubeconfig
from tests.support.servers import REPO, ServerProcess, free_port, tool, wait_until
from tests.support.tcpproxy import Cut, TcpProxy

SYSTEM_NAMESPACE = "appinfra-system"


@dataclass
class Audited:
    cluster: Cluster
    audit_log: Path


@pytest.fixture(scope="module")
def audited(workdir: Path) -> Iterator[Audited]:
    """A control plane of our own whose kube-apiserver writes an audit log of writes."""
    home = workdir / "controlplane-audited"
    audit_log, audit_args = apiserver_args(home)
    kubeconfig = home / "kubeconfig"
    proc = ServerProcess(
        "controlplane-audited",
        [
            tool("controlplane"), "up",
            "--kubeconfig", str(kubeconfig),
            "--data-dir", str(home / "data"),
            "--port", str(free_port()),
            "--log-dir", str(home / "logs"),
            "--nodes", "0",  # no Pod needs to run: nothing here waits for availability
            *audit_args,
        ],
        home,
    ).start()  # fmt: skip
    STARTED.append(proc)
    proc.wait_ready(kubeconfig.exists, 180)
    cluster = Cluster(kubeconfig)
    crds = str(REPO / "crds")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", crds)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
    try:
        yield Audited(cluster, audit_log)
    finally:
        proc.stop()


def replica(
    cluster: Cluster, workdir: Path, namespace: str, name: str, kubeconfig: Path
) -> Operator:
    op = Operator(cluster, workdir, f"{name}-{namespace}", "--namespace", namespace,
                  "--leader-elect", "--lease-namespace", namespace)  # fmt: skip
    op.process.argv.remove("--all-namespaces")
    op.process.env.update({"POD_NAME": name, "KUBECONFIG": str(kubeconfig)})
    return op.start()


def via(kubeconfig: Path, proxy: TcpProxy) -> Path:
    """The same credentials, with the API server reached through `proxy`."""
    doc = yaml.safe_load(kubeconfig.read_text())
    for entry in doc["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    kubeconfig.write_text(yaml.safe_dump(doc))
    return kubeconfig


@pytest.mark.parametrize("how", ["reset", "blackhole"])
def test_a_cut_off_leader_stops_writing_before_the_standby_takes_over(
    audited: Audited, workdir: Path, how: Cut
) -> None:
    """reset: every request of the leader fails at once (the elector of old ended on the
    first such error and left the workers running). blackhole: every request hangs
    until its timeout, so the leader must step down while its renew is still waiting."""
    cluster = audited.cluster
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    with cluster.api() as api:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
        )
    users = {}
    kubeconfigs = {}
    for name in ("replica-a", "replica-b"):
        account = f"{name}-{namespace}"
        kubeconfigs[name] = service_account_kubeconfig(
            cluster, SYSTEM_NAMESPACE, account, chart_rules(), workdir / f"{account}.kubeconfig"
        )
        users[name] = service_account_user(SYSTEM_NAMESPACE, account)
    proxy = TcpProxy(cluster.server).start()
    via(kubeconfigs["replica-a"], proxy)

    def holder() -> str:
        lease = cluster.kubectl_json("-n", namespace, "get", "lease", "appinfra")
        return str(lease["spec"].get("holderIdentity") or "")

    a = replica(cluster, workdir, namespace, "replica-a", kubeconfigs["replica-a"])
    b: Operator | None = None
    try:
        wait_until(lambda: holder() == "replica-a", 30, "replica-a to lead")
        b = replica(cluster, workdir, namespace, "replica-b", kubeconfigs["replica-b"])
        apply(cluster, deployment(namespace, "before"), profile(namespace, "before"))
        wait_condition(cluster, "serviceprofile", namespace, "before", "Ready", "True", timeout=30)
        assert writes_by(audited.audit_log, users["replica-a"]), "the leader's writes are audited"

        # The leader loses its API connection.
        proxy.cut(how)
        wait_until(lambda: holder() == "replica-b", 60, "replica-b to take over")
        # The network comes back. A replica that still believes it leads (or never
        # stopped its workers) reconnects its watches now and writes again.
        proxy.heal()
        time.sleep(5)
        after = [f"after-{i}" for i in range(4)]
        for name in after:
            # Each new profile is an event both replicas see, if both still run.
            apply(cluster, deployment(namespace, name), profile(namespace, name))
            time.sleep(2)
        for name in after:  # what users apply after the takeover converges
            wait_condition(cluster, "serviceprofile", namespace, name, "Ready", "True", timeout=30)
        time.sleep(5)  # a late write of the old leader would land in the log by now

        old = writes_by(audited.audit_log, users["replica-a"])
        new = writes_by(audited.audit_log, users["replica-b"])
        assert new, "the new leader wrote"
        report = "\n".join(
            ["replica-a:", *map(str, old), "replica-b:", *map(str, new)]
        )  # fmt: skip
        # Never two writers: every write of the old leader completed before the new
        # leader's first one arrived.
        assert old[-1].completed < new[0].received, f"two writers at once:\n{report}"

        # The old leader stopped on its own and says so with its exit status.
        assert a.process.proc is not None
        try:
            code = a.process.proc.wait(60)
        except Exception:
            pytest.fail(f"the cut-off leader is still running:\n{a.process.log_tail()}")
        assert code == 1, a.process.log_tail()
        log = a.process.log_path.read_text()
        assert "lost the leader lease" in log
        if how == "reset":  # a hung attempt may still be waiting when the process ends
            assert "leader election attempt failed (MaxRetryError)" in log

        # A shutdown cancels the elector too: that end is expected, and exits 0.
        assert b.process.stop() == 0, b.process.log_tail()
        assert "leader election was cancelled" not in b.process.log_path.read_text()
    finally:
        for op in (a, b):
            if op is not None:
                op.stop()
        proxy.stop()
