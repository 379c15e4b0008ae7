"""HealthPolicy against the real control plane: probes by server-side apply, release on
deletion, and the live Healthy verdict from the Deployment's status."""

from __future__ import annotations

import copy
import time
from typing import Any

from tests.e2e.conftest import Operator
from tests.support.kube import Cluster
from tests.support.objects import (
    apply,
    condition,
    deployment,
    get,
    managers,
    spec_and_our_writes,
    wait_condition,
)
from tests.support.servers import wait_until

HP = "healthpolicy"
MANAGER = "appinfra-healthpolicy"


def policy(namespace: str, name: str, target: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": "HealthPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"targetRef": {"kind": "Deployment", "name": target}, **spec},
    }


def with_own_readiness(namespace: str, name: str) -> dict[str, Any]:
    """A Deployment whose `app` container has its own readiness probe; `sidecar` has none."""
    dep = deployment(namespace, name, ("app", "sidecar"))
    app = dep["spec"]["template"]["spec"]["containers"][0]
    app["readinessProbe"] = {"tcpSocket": {"port": 8080}, "periodSeconds": 7}
    return dep


PROBES = {
    "liveness": {"httpGet": {"path": "/health/live", "port": "http"}, "periodSeconds": 10},
    "readiness": {"httpGet": {"path": "/health/ready", "port": "http"}},
}


def containers(cluster: Cluster, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    dep = get(cluster, "deployment", namespace, name)
    assert dep is not None
    return {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}


def test_default_mode_fills_gaps_and_keeps_the_users_probes(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, with_own_readiness(namespace, "api"))
    apply(cluster, policy(namespace, "api", "api", **PROBES))
    hp = wait_condition(cluster, HP, namespace, "api", "Enforced", "True", "Enforced")
    assert condition(hp, "Accepted")["status"] == "True"
    c = containers(cluster, namespace, "api")
    assert c["app"]["readinessProbe"]["tcpSocket"] == {"port": 8080}  # the user's, kept
    assert c["app"]["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert c["sidecar"]["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert c["sidecar"]["livenessProbe"]["httpGet"]["port"] == "http"
    dep = get(cluster, "deployment", namespace, "api")
    assert dep["metadata"]["annotations"]["appinfra.dev/healthpolicy"] == "api"  # type: ignore[index]
    assert MANAGER in managers(dep)  # type: ignore[arg-type]

    # Deleting the policy releases exactly our fields.
    cluster.kubectl("-n", namespace, "delete", HP, "api", "--wait=true", "--timeout=60s")
    c = containers(cluster, namespace, "api")
    assert c["app"]["readinessProbe"]["tcpSocket"] == {"port": 8080}
    assert "livenessProbe" not in c["app"] and "livenessProbe" not in c["sidecar"]
    assert "readinessProbe" not in c["sidecar"]
    dep = get(cluster, "deployment", namespace, "api")
    assert MANAGER not in managers(dep)  # type: ignore[arg-type]
    assert "appinfra.dev/healthpolicy" not in dep["metadata"].get("annotations", {})  # type: ignore[index]


def test_override_mode_replaces_and_graceful_shutdown(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "worker", ("app", "sidecar")))
    spec = {
        "mode": "Override",
        "containers": ["app"],
        "liveness": {"tcpSocket": {"port": 8080}},
        "gracefulShutdown": {"preStopSleepSeconds": 5, "terminationGracePeriodSeconds": 40},
    }
    apply(cluster, policy(namespace, "worker", "worker", **spec))
    wait_condition(cluster, HP, namespace, "worker", "Enforced", "True")
    dep = get(cluster, "deployment", namespace, "worker")
    pod = dep["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["terminationGracePeriodSeconds"] == 40
    c = {x["name"]: x for x in pod["containers"]}
    assert c["app"]["livenessProbe"]["tcpSocket"] == {"port": 8080}
    assert c["app"]["lifecycle"]["preStop"]["sleep"]["seconds"] == 5
    assert "livenessProbe" not in c["sidecar"]  # not selected
    assert "lifecycle" not in c["sidecar"]


def test_unknown_named_port_is_invalid_naming_container_and_port(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "ports"))
    before = get(cluster, "deployment", namespace, "ports")
    bad = {"liveness": {"httpGet": {"path": "/", "port": "metrics"}}}
    apply(cluster, policy(namespace, "ports", "ports", **bad))
    hp = wait_condition(cluster, HP, namespace, "ports", "Accepted", "False", "Invalid")
    message = condition(hp, "Accepted")["message"]
    assert '"app"' in message and '"metrics"' in message
    after = get(cluster, "deployment", namespace, "ports")
    assert spec_and_our_writes(after) == spec_and_our_writes(before)


def test_conflict_and_target_not_found(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    # The older policy has the name that sorts last, so only "the oldest wins" (not
    # "the smaller name wins") makes it the winner.
    apply(cluster, policy(namespace, "z-first", "later", **PROBES))
    wait_condition(cluster, HP, namespace, "z-first", "Accepted", "False", "TargetNotFound")
    time.sleep(1.5)  # creationTimestamp has whole seconds: the second one is strictly newer
    apply(cluster, policy(namespace, "a-second", "later", **PROBES))
    hp = wait_condition(cluster, HP, namespace, "a-second", "Accepted", "False", "Conflicted")
    assert "HealthPolicy z-first already targets" in condition(hp, "Accepted")["message"]
    first = get(cluster, HP, namespace, "z-first")
    assert first["metadata"]["creationTimestamp"] < hp["metadata"]["creationTimestamp"]  # type: ignore[index]
    apply(cluster, deployment(namespace, "later"))
    wait_condition(cluster, HP, namespace, "z-first", "Ready", "True", "Reconciled")
    hp = get(cluster, HP, namespace, "a-second")
    assert condition(hp, "Accepted")["reason"] == "Conflicted"
    dep = get(cluster, "deployment", namespace, "later")
    assert dep["metadata"]["annotations"]["appinfra.dev/healthpolicy"] == "z-first"  # type: ignore[index]


def test_healthy_follows_the_deployment_status(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    # Pods that never become ready: with a short progress deadline the
    # controller-manager declares ProgressDeadlineExceeded, and the verdict follows.
    stuck = deployment(namespace, "stuck")
    stuck["spec"]["progressDeadlineSeconds"] = 2
    # With simulated nodes, pods of an image named *not-ready* run but never get Ready.
    stuck["spec"]["template"]["spec"]["containers"][0]["image"] = "example/not-ready:1"
    apply(cluster, stuck)
    apply(cluster, policy(namespace, "stuck", "stuck", **PROBES))
    hp = wait_condition(cluster, HP, namespace, "stuck", "Healthy", "False",
                        "ProgressDeadlineExceeded", timeout=90)  # fmt: skip
    assert hp["status"]["replicas"]["desired"] == 1
    assert hp["status"]["replicas"]["available"] == 0

    # Scaled to zero there is nothing to wait for: Available, with no polling involved.
    idle = copy.deepcopy(deployment(namespace, "idle"))
    idle["spec"]["replicas"] = 0
    idle["spec"]["template"]["spec"]["containers"][0]["image"] = "example/not-ready:1"
    apply(cluster, idle)
    apply(cluster, policy(namespace, "idle", "idle", **PROBES))
    wait_condition(cluster, HP, namespace, "idle", "Healthy", "True", "Available", timeout=60)

    # Scaling up flips it back, driven by the Deployment's status events.
    cluster.kubectl("-n", namespace, "scale", "deployment", "idle", "--replicas=2")
    wait_until(
        lambda: condition(get(cluster, HP, namespace, "idle"), "Healthy").get("status") == "False",
        60,
        "Healthy to turn False after scaling up",
    )


def _reasons_until(
    cluster: Cluster, namespace: str, name: str, final: str, timeout: float
) -> list[str]:
    """Every Healthy reason the policy shows, in order, until `final` (polled at 5 Hz)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reason = condition(get(cluster, HP, namespace, name), "Healthy").get("reason")
        if reason and (not seen or seen[-1] != reason):
            seen.append(reason)
        if reason == final:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"never reached {final}; seen {seen}")


def test_rollout_in_progress_then_available_then_unavailable_on_real_rollouts(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    # The local control plane's simulated nodes run pods and make them Ready ~1 s later.
    dep = deployment(namespace, "live")
    dep["spec"]["replicas"] = 2
    apply(cluster, dep, policy(namespace, "live", "live", **PROBES))
    seen = _reasons_until(cluster, namespace, "live", "Available", 90)
    assert "RolloutInProgress" in seen, seen
    hp = get(cluster, HP, namespace, "live")
    assert hp["status"]["replicas"] == {"desired": 2, "updated": 2, "ready": 2, "available": 2}  # type: ignore[index]

    # More replicas than are ready, with the rollout itself complete: Unavailable.
    cluster.kubectl("-n", namespace, "scale", "deployment", "live", "--replicas=5")
    seen = _reasons_until(cluster, namespace, "live", "Available", 90)
    assert "Unavailable" in seen or "RolloutInProgress" in seen, seen

    # A new version whose pods never become ready: the rollout is in progress, not done.
    cluster.kubectl("-n", namespace, "set", "image", "deployment/live", "app=example/not-ready:2")
    seen = _reasons_until(cluster, namespace, "live", "RolloutInProgress", 60)
    time.sleep(3)
    assert condition(get(cluster, HP, namespace, "live"), "Healthy")["status"] == "False"
