"""HealthPolicy against the real control plane: probes by server-side apply, release on
deletion, and the live Healthy verdict from the Deployment's status.

The verdict tests prove "event-driven, no polling": the session operator resyncs every
hour (conftest), far longer than any wait here, so a verdict that changes within a
wait was caused by a watch event on the Deployment, not by a periodic resync.
"""

from __future__ import annotations

import copy
import json
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
LONGEST_VERDICT_WAIT = 90  # seconds; every verdict wait below is at most this


def no_resync_within_the_waits(operator: Operator) -> None:
    """The verdict tests prove event-driven updates only if no periodic resync can
    happen during their waits (the operator's first resync is a full period after start)."""
    resync = float(operator.process.env["APPINFRA_RESYNC_SECONDS"])
    assert resync >= 10 * LONGEST_VERDICT_WAIT, f"resync every {resync:.0f}s hides polling"


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


def with_probe(namespace: str, name: str, probe: dict[str, Any]) -> dict[str, Any]:
    """A Deployment whose one container `app` has its own readiness probe."""
    dep = deployment(namespace, name)
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = probe
    return dep


def test_override_replaces_an_existing_probe_of_the_same_handler_type_whole(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    own = {"httpGet": {"path": "/own", "port": "http", "scheme": "HTTPS"},
           "periodSeconds": 7, "failureThreshold": 9}  # fmt: skip
    apply(cluster, with_probe(namespace, "same", own))
    readiness = {"httpGet": {"path": "/health/ready", "port": "http"}, "timeoutSeconds": 2}
    apply(cluster, policy(namespace, "same", "same", mode="Override", readiness=readiness))
    wait_condition(cluster, HP, namespace, "same", "Ready", "True")
    # Nothing of the user's probe lives on inside the policy's: the fields the policy
    # leaves out have the API server's defaults, not the user's HTTPS, 7 and 9.
    replaced = {"httpGet": {"path": "/health/ready", "port": "http", "scheme": "HTTP"},
                "timeoutSeconds": 2, "periodSeconds": 10, "successThreshold": 1,
                "failureThreshold": 3}  # fmt: skip
    assert containers(cluster, namespace, "same")["app"]["readinessProbe"] == replaced

    # Deleting the policy leaves the probe as the policy set it (the user's values are
    # gone; their next apply of the manifest brings them back), not a mix of the two.
    cluster.kubectl("-n", namespace, "delete", HP, "same", "--wait=true", "--timeout=60s")
    assert containers(cluster, namespace, "same")["app"]["readinessProbe"] == replaced
    held = managers(get(cluster, "deployment", namespace, "same"))  # type: ignore[arg-type]
    assert MANAGER not in held and "released-from-appinfra" in held


def test_deleting_an_override_of_a_tcp_port_finishes_and_keeps_a_valid_probe(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    """Force took the port from the user's manager, which kept the rest of the probe:
    releasing alone would strip the probe of its handler, which the API server rejects,
    and the finalizer could never be removed."""
    apply(cluster, with_probe(namespace, "tcp", {"tcpSocket": {"port": 8080}}))
    readiness = {"tcpSocket": {"port": 9090}}
    apply(cluster, policy(namespace, "tcp", "tcp", mode="Override", readiness=readiness))
    wait_condition(cluster, HP, namespace, "tcp", "Ready", "True")
    probe = containers(cluster, namespace, "tcp")["app"]["readinessProbe"]
    assert probe["tcpSocket"] == {"port": 9090}
    cluster.kubectl("-n", namespace, "delete", HP, "tcp", "--wait=true", "--timeout=60s")
    assert containers(cluster, namespace, "tcp")["app"]["readinessProbe"] == probe


def test_override_with_another_handler_type_is_rejected_as_apply_cannot_replace_it(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, with_probe(namespace, "other", {"tcpSocket": {"port": 8080}}))
    before = get(cluster, "deployment", namespace, "other")
    readiness = {"httpGet": {"path": "/health/ready", "port": "http"}}
    apply(cluster, policy(namespace, "other", "other", mode="Override", readiness=readiness))
    hp = wait_condition(cluster, HP, namespace, "other", "Accepted", "False", "Invalid")
    message = condition(hp, "Accepted")["message"]
    assert message.startswith('spec.readiness: container "app" has its own readinessProbe')
    assert "tcpSocket" in message and "httpGet" in message
    assert spec_and_our_writes(get(cluster, "deployment", namespace, "other")) == (
        spec_and_our_writes(before)
    )

    # Why it is rejected rather than applied: the API server itself refuses a forced
    # server-side apply of that probe by another field manager, because apply leaves
    # the tcpSocket field the user's manager owns next to the new httpGet.
    intent = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "other", "namespace": namespace},
              "spec": {"template": {"spec": {"containers": [
                  {"name": "app", "readinessProbe": readiness}]}}}}  # fmt: skip
    proc = cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=override-probe",
        "-f", "-", input=json.dumps(intent), check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "may not specify more than 1 handler type" in proc.stderr, proc.stderr


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
    no_resync_within_the_waits(operator)
    # Pods that never become ready: with a short progress deadline the
    # controller-manager declares ProgressDeadlineExceeded, and the verdict follows.
    stuck = deployment(namespace, "stuck")
    stuck["spec"]["progressDeadlineSeconds"] = 2
    # With simulated nodes, pods of an image named *not-ready* run but never get Ready.
    stuck["spec"]["template"]["spec"]["containers"][0]["image"] = "example/not-ready:1"
    apply(cluster, stuck)
    apply(cluster, policy(namespace, "stuck", "stuck", **PROBES))
    hp = wait_condition(cluster, HP, namespace, "stuck", "Healthy", "False",
                        "ProgressDeadlineExceeded", timeout=LONGEST_VERDICT_WAIT)  # fmt: skip
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
    no_resync_within_the_waits(operator)
    # The local control plane's simulated nodes run pods and make them Ready ~1 s later.
    dep = deployment(namespace, "live")
    dep["spec"]["replicas"] = 2
    apply(cluster, dep, policy(namespace, "live", "live", **PROBES))
    seen = _reasons_until(cluster, namespace, "live", "Available", LONGEST_VERDICT_WAIT)
    assert "RolloutInProgress" in seen, seen
    hp = get(cluster, HP, namespace, "live")
    assert hp["status"]["replicas"] == {"desired": 2, "updated": 2, "ready": 2, "available": 2}  # type: ignore[index]

    # More replicas than are ready, with the rollout itself complete: Unavailable.
    cluster.kubectl("-n", namespace, "scale", "deployment", "live", "--replicas=5")
    seen = _reasons_until(cluster, namespace, "live", "Available", LONGEST_VERDICT_WAIT)
    assert "Unavailable" in seen or "RolloutInProgress" in seen, seen

    # A new version whose pods never become ready: the rollout is in progress, not done.
    cluster.kubectl("-n", namespace, "set", "image", "deployment/live", "app=example/not-ready:2")
    seen = _reasons_until(cluster, namespace, "live", "RolloutInProgress", 60)
    time.sleep(3)
    assert condition(get(cluster, HP, namespace, "live"), "Healthy")["status"] == "False"
