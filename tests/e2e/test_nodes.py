"""Rollouts complete: kube-scheduler binds Pods to the simulated nodes of
`controlplane up` (`controlplane nodes`), which report them Running and, a moment
later, Ready; images containing `not-ready` never become ready. See
tests/controlplane/README.md. Against an external cluster (APPINFRA_TEST_KUBECONFIG)
the same checks hold, except for what only the simulator does (marked below)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.kube import Cluster
from tests.support.servers import wait_until

PAUSE = "registry.k8s.io/pause:3.10"
PAUSE_NEXT = "registry.k8s.io/pause:3.9"
NOT_READY = "example/not-ready:1"
SIMULATED = "controlplane.appinfra.dev/simulated-node"


def pods(cluster: Cluster, namespace: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "-n", namespace, "get", "pods", "-l", f"app={app}"
    )["items"]
    return items


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj["status"].get("conditions", []) if c["type"] == kind), {})


def create_deployment(
    cluster: Cluster, namespace: str, name: str, image: str, replicas: int
) -> None:
    cluster.kubectl(
        "-n", namespace, "create", "deployment", name, f"--image={image}", f"--replicas={replicas}"
    )


def rollout_status(cluster: Cluster, namespace: str, name: str, timeout: int = 60) -> None:
    cluster.kubectl(
        "-n", namespace, "rollout", "status", f"deployment/{name}", f"--timeout={timeout}s",
        timeout=timeout + 30,
    )  # fmt: skip


def simulated_nodes(cluster: Cluster) -> set[str]:
    nodes = cluster.kubectl_json("get", "nodes", "-l", f"{SIMULATED}=true")["items"]
    return {n["metadata"]["name"] for n in nodes}


def test_nodes_are_ready_and_schedulable(cluster: Cluster) -> None:
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    ready = [
        n for n in nodes
        if condition(n, "Ready").get("status") == "True" and not n["spec"].get("unschedulable")
    ]  # fmt: skip
    assert len(ready) >= 2, [n["metadata"]["name"] for n in nodes]


def test_deployment_rolls_out_and_an_image_update_completes(
    cluster: Cluster, namespace: str
) -> None:
    create_deployment(cluster, namespace, "web", PAUSE, 2)
    rollout_status(cluster, namespace, "web")

    dep = cluster.kubectl_json("-n", namespace, "get", "deployment", "web")
    assert dep["status"]["availableReplicas"] == 2
    assert dep["status"]["readyReplicas"] == 2
    first = pods(cluster, namespace, "web")
    assert len(first) == 2
    for pod in first:
        assert pod["status"]["phase"] == "Running"
        assert condition(pod, "Ready")["status"] == "True"
        assert pod["spec"]["nodeName"]
        assert pod["status"]["podIP"] and pod["status"]["hostIP"]
    assert len({p["status"]["podIP"] for p in first}) == 2

    # A new pod template: a second ReplicaSet takes over, the first scales to zero,
    # and the old Pods are gone (the "kubelet" removes them once deleted).
    cluster.kubectl("-n", namespace, "set", "image", "deployment/web", f"pause={PAUSE_NEXT}")
    rollout_status(cluster, namespace, "web")

    replicasets = cluster.kubectl_json("-n", namespace, "get", "replicasets", "-l", "app=web")
    by_image = {
        rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs for rs in replicasets["items"]
    }
    assert set(by_image) == {PAUSE, PAUSE_NEXT}
    assert by_image[PAUSE_NEXT]["status"].get("availableReplicas") == 2
    assert by_image[PAUSE]["spec"]["replicas"] == 0

    def only_new_pods() -> bool:
        now = pods(cluster, namespace, "web")
        return len(now) == 2 and all(
            p["spec"]["containers"][0]["image"] == PAUSE_NEXT
            and condition(p, "Ready").get("status") == "True"
            for p in now
        )

    wait_until(only_new_pods, 30, "only the two new Pods, both Ready")
    old_names = {p["metadata"]["name"] for p in first}
    assert not old_names & {p["metadata"]["name"] for p in pods(cluster, namespace, "web")}


def test_not_ready_image_keeps_the_deployment_unavailable(cluster: Cluster, namespace: str) -> None:
    create_deployment(cluster, namespace, "stuck", NOT_READY, 2)
    simulated = simulated_nodes(cluster)

    def scheduled() -> bool:
        now = pods(cluster, namespace, "stuck")
        return len(now) == 2 and all(p["spec"].get("nodeName") for p in now)

    wait_until(scheduled, 60, "two scheduled Pods")
    on_simulated = all(
        p["spec"]["nodeName"] in simulated for p in pods(cluster, namespace, "stuck")
    )
    if on_simulated:
        # The simulator runs them (a real node would fail to pull the image).
        def running() -> bool:
            return all(
                p["status"].get("phase") == "Running" for p in pods(cluster, namespace, "stuck")
            )

        wait_until(running, 30, "two Running Pods")
    # Longer than the simulator's readiness delay: a Pod would be Ready by now.
    proc = cluster.kubectl(
        "-n", namespace, "rollout", "status", "deployment/stuck", "--timeout=5s", check=False
    )
    assert proc.returncode != 0, proc.stdout

    dep = cluster.kubectl_json("-n", namespace, "get", "deployment", "stuck")
    assert dep["status"].get("availableReplicas", 0) == 0
    assert dep["status"].get("readyReplicas", 0) == 0
    assert condition(dep, "Available")["status"] == "False"
    for pod in pods(cluster, namespace, "stuck"):
        assert condition(pod, "Ready")["status"] == "False"
        if on_simulated:
            assert pod["status"]["phase"] == "Running"
            assert condition(pod, "ContainersReady")["status"] == "False"
            statuses = pod["status"]["containerStatuses"]
            assert [s["ready"] for s in statuses] == [False]
            assert "running" in statuses[0]["state"]


def test_namespace_deletion_completes(cluster: Cluster) -> None:
    # Not the `namespace` fixture: it deletes its namespace itself afterwards.
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    create_deployment(cluster, name, "web", PAUSE, 3)
    rollout_status(cluster, name, "web")

    # The namespace controller deletes the Pods gracefully; only a kubelet's final
    # zero-grace delete removes them, and only then can the namespace go.
    cluster.kubectl("delete", "namespace", name, "--wait=true", "--timeout=90s", timeout=120)
    proc = cluster.kubectl("get", "namespace", name, check=False)
    assert proc.returncode != 0 and "NotFound" in proc.stderr, proc.stdout
