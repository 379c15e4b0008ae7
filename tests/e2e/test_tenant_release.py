"""Fields appinfra wrote on a target it does not own are given back whenever they stop
being wanted: a changed targetRef, a removed consumer, deletion, or `appinfra
uninstall` once the operator is gone. A finalizer is held only while such fields
exist, so nothing else can make namespace or CRD deletion wait."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.e2e.conftest import Operator, Stores
from tests.e2e.test_healthpolicy import PROBES, policy
from tests.e2e.test_secretbinding import binding, put
from tests.e2e.test_serviceprofile import profile
from tests.support.kube import Cluster
from tests.support.objects import apply, deployment, get, managers, wait_condition
from tests.support.servers import tool, wait_until

HP = "healthpolicy"
SB = "secretbinding"
SP = "serviceprofile"
FINALIZER = "appinfra.dev/release"


def _ours(cluster: Cluster, namespace: str, name: str) -> tuple[set[str], set[str]]:
    """appinfra's field managers and annotations on a Deployment."""
    dep = get(cluster, "deployment", namespace, name)
    assert dep is not None
    annotations = set(dep["metadata"].get("annotations") or {})
    template = dep["spec"]["template"]["metadata"].get("annotations") or {}
    return (
        {m for m in managers(dep) if m.startswith("appinfra")},
        {a for a in annotations | set(template) if a.startswith("appinfra.dev/")},
    )


def _finalizers(cluster: Cluster, kind: str, namespace: str, name: str) -> list[str]:
    obj = get(cluster, kind, namespace, name)
    assert obj is not None
    found: list[str] = obj["metadata"].get("finalizers") or []
    return found


def test_a_changed_target_ref_releases_the_old_target(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "old"), deployment(namespace, "new"))
    apply(cluster, policy(namespace, "api", "old", **PROBES))
    wait_condition(cluster, HP, namespace, "api", "Enforced", "True")
    assert "appinfra-healthpolicy" in _ours(cluster, namespace, "old")[0]
    apply(cluster, policy(namespace, "api", "new", **PROBES))
    wait_condition(cluster, HP, namespace, "api", "Enforced", "True")
    wait_until(lambda: _ours(cluster, namespace, "old") == (set(), set()), 30, "old released")
    dep = get(cluster, "deployment", namespace, "old")
    assert dep is not None
    assert "livenessProbe" not in dep["spec"]["template"]["spec"]["containers"][0]
    assert "appinfra-healthpolicy" in _ours(cluster, namespace, "new")[0]


def test_a_removed_consumer_is_released_and_the_finalizer_goes(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    put(stores, f"{namespace}/db", {"password": "pw"})
    data = [{"secretKey": "PW", "remoteRef": {"key": f"{namespace}/db", "property": "password"}}]
    apply(cluster, deployment(namespace, "api"))
    consumer: dict[str, Any] = {"kind": "Deployment", "name": "api"}
    apply(cluster, binding(namespace, "db", data=data, targetRef=consumer))
    wait_condition(cluster, SB, namespace, "db", "Ready", "True")
    assert "appinfra.dev/secret-hash" in _ours(cluster, namespace, "api")[1]
    assert FINALIZER in _finalizers(cluster, SB, namespace, "db")
    apply(cluster, binding(namespace, "db", data=data))  # no targetRef any more
    wait_condition(cluster, SB, namespace, "db", "Ready", "True")
    wait_until(lambda: _ours(cluster, namespace, "api") == (set(), set()), 30, "api released")
    assert FINALIZER not in _finalizers(cluster, SB, namespace, "db")


def test_no_finalizer_without_target_fields(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    put(stores, f"{namespace}/db", {"password": "pw"})
    data = [{"secretKey": "PW", "remoteRef": {"key": f"{namespace}/db", "property": "password"}}]
    apply(cluster, binding(namespace, "plain", data=data))
    wait_condition(cluster, SB, namespace, "plain", "Ready", "True")
    assert FINALIZER not in _finalizers(cluster, SB, namespace, "plain")


def test_uninstall_releases_fields_and_finalizers_so_deletion_completes(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "api"))
    apply(cluster, policy(namespace, "api", "api", **PROBES))
    apply(cluster, profile(namespace, "api", "api", config={"data": {"A": "1"}}))
    wait_condition(cluster, HP, namespace, "api", "Ready", "True")
    wait_condition(cluster, SP, namespace, "api", "Ready", "True")
    assert FINALIZER in _finalizers(cluster, HP, namespace, "api")
    operator.stop()  # as after `helm uninstall`: nobody is left to run the finalizers
    try:
        proc = subprocess.run(
            [tool("appinfra"), "uninstall", "--namespace", namespace],
            capture_output=True,
            text=True,
            env={"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin"},
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert f"HealthPolicy {namespace}/api" in proc.stdout
        assert f"ServiceProfile {namespace}/api" in proc.stdout
        assert _ours(cluster, namespace, "api") == (set(), set())
        for kind in (HP, SP):
            assert FINALIZER not in _finalizers(cluster, kind, namespace, "api")
        cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=60s")
        assert get(cluster, HP, namespace, "api") is None
    finally:
        operator.start()
