"""Argo CD (or any GitOps tool) applying a Deployment with server-side apply and
appinfra shaping the same Deployment do not fight: each owns its own fields."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.conftest import Operator
from tests.support.kube import Cluster
from tests.support.objects import deployment, get, managers, wait_condition

GITOPS = "argocd-controller"


def gitops_apply(cluster: Cluster, obj: dict[str, Any], force: bool = False) -> str:
    args = ["apply", "--server-side", f"--field-manager={GITOPS}", "-f", "-"]
    if force:
        args.insert(2, "--force-conflicts")
    proc = cluster.kubectl(*args, input=json.dumps(obj), check=False)
    return proc.stderr if proc.returncode else ""


def test_gitops_server_side_apply_and_appinfra_coexist(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    dep = deployment(namespace, "coexist", ("app", "sidecar"))
    assert gitops_apply(cluster, dep) == ""
    profile = {
        "apiVersion": "appinfra.dev/v1alpha1", "kind": "ServiceProfile",
        "metadata": {"name": "coexist", "namespace": namespace},
        "spec": {"targetRef": {"kind": "Deployment", "name": "coexist"},
                 "config": {"data": {"A": "1"}}, "rollout": {"minReadySeconds": 5}},
    }  # fmt: skip
    health = {
        "apiVersion": "appinfra.dev/v1alpha1", "kind": "HealthPolicy",
        "metadata": {"name": "coexist", "namespace": namespace},
        "spec": {"targetRef": {"kind": "Deployment", "name": "coexist"},
                 "readiness": {"tcpSocket": {"port": 8080}}},
    }  # fmt: skip
    assert gitops_apply(cluster, profile) == "" and gitops_apply(cluster, health) == ""
    wait_condition(cluster, "serviceprofile", namespace, "coexist", "Ready", "True")
    wait_condition(cluster, "healthpolicy", namespace, "coexist", "Ready", "True")

    # A sync of the unchanged manifest, and one with a new image, apply without conflicts
    # and without undoing appinfra's fields.
    assert gitops_apply(cluster, dep) == ""
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.k8s.io/pause:3.9"
    assert gitops_apply(cluster, dep) == ""
    live = get(cluster, "deployment", namespace, "coexist")
    assert live is not None
    assert {GITOPS, "appinfra-serviceprofile", "appinfra-healthpolicy"} <= managers(live)
    spec = live["spec"]
    assert spec["minReadySeconds"] == 5
    app = spec["template"]["spec"]["containers"][0]
    assert app["image"] == "registry.k8s.io/pause:3.9"
    assert app["readinessProbe"]["tcpSocket"]["port"] == 8080
    assert {"configMapRef": {"name": "coexist-config"}} in app["envFrom"]

    # Setting a field appinfra owns in git is reported as a conflict, not silently fought
    # over: that is the signal to leave it out of git (see docs/argocd.md).
    dep["spec"]["minReadySeconds"] = 1
    error = gitops_apply(cluster, dep)
    assert "conflict" in error.lower() and "appinfra-serviceprofile" in error
