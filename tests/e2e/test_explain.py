"""`appinfra explain` against the real API server, with the session operator having
reconciled a ServiceProfile, a HealthPolicy, a SecretBinding (OpenBao) and a second,
Conflicted ServiceProfile on one Deployment. The command runs as users run it: a
subprocess with the cluster's KUBECONFIG, and as the kubectl plugin."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from kubernetes.client import ApiException

from tests.e2e.conftest import Operator, Stores
from tests.support.kube import Cluster
from tests.support.objects import (
    appinfra_resource,
    apply,
    condition,
    deployment,
    get,
    wait_condition,
)
from tests.support.servers import VENV_BIN, tool, wait_until


def _run(cluster: Cluster, *argv: str, kubectl: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"  # where kubectl finds plugins
    cmd = [tool("kubectl"), "appinfra", *argv] if kubectl else [tool("appinfra"), *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def _section(text: str, header: str) -> list[str]:
    """The indented lines under `header` in the owned-fields part of the text output."""
    lines = text.split("Resources attached:")[0].splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(header))
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        block.append(line.strip())
    return block


def test_explain_lists_owned_fields_states_children_and_sync(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str, tmp_path: Path
) -> None:
    ref = {"kind": "Deployment", "name": "web"}
    password = f"pw-{namespace}-value"
    stores.bao.secrets.kv.v2.create_or_update_secret(
        path=f"{namespace}/db", secret={"password": password}, mount_point="secret"
    )
    apply(cluster, deployment(namespace, "web"))
    apply(
        cluster,
        appinfra_resource("ServiceProfile", namespace, "z-first", targetRef=ref,
                  rollout={"maxSurge": "50%"}, config={"data": {"A": "1"}}),
        appinfra_resource("HealthPolicy", namespace, "probes", targetRef=ref,
                  readiness={"httpGet": {"path": "/ready", "port": "http"}}),
        appinfra_resource("SecretBinding", namespace, "db", store="vault-main", targetRef=ref,
                  data=[{"secretKey": "PW", "remoteRef": {"key": f"{namespace}/db",
                                                         "property": "password"}}]),
    )  # fmt: skip
    sp = wait_condition(cluster, "serviceprofile", namespace, "z-first", "Ready", "True")
    wait_condition(cluster, "healthpolicy", namespace, "probes", "Ready", "True")
    sb = wait_condition(cluster, "secretbinding", namespace, "db", "Ready", "True")
    time.sleep(1.5)  # creationTimestamp has whole seconds: the rival is strictly younger
    apply(cluster, appinfra_resource("ServiceProfile", namespace, "a-second", targetRef=ref,
                             disruption={"minAvailable": 1}))  # fmt: skip
    loser = wait_condition(
        cluster, "serviceprofile", namespace, "a-second", "Accepted", "False", "Conflicted"
    )
    sb = get(cluster, "secretbinding", namespace, "db") or sb  # its latest sync times

    proc = _run(cluster, "explain", "deployment/web", "-n", namespace)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout

    # Owned fields, under the resource that owns them.
    sp_fields = _section(text, "ServiceProfile/z-first")
    assert "spec.strategy.rollingUpdate.maxSurge" in sp_fields
    assert any(p.startswith("spec.template.spec.containers[name=app].envFrom") for p in sp_fields)
    hp_fields = _section(text, "HealthPolicy/probes")
    assert any(
        p.startswith("spec.template.spec.containers[name=app].readinessProbe") for p in hp_fields
    )
    assert not any("readinessProbe" in p for p in sp_fields)
    sb_fields = _section(text, "SecretBinding/db")
    assert any("appinfra.dev/secret-hash" in p for p in sb_fields)
    assert "ServiceProfile/a-second" not in text.split("Resources attached:")[0]

    # States and reasons, as the objects' status states them.
    lines = text.split("Resources attached:")[1].splitlines()
    first = next(line for line in lines if line.strip().startswith("ServiceProfile/z-first "))
    assert f"Ready=True {condition(sp, 'Ready')['reason']}" in first
    second = next(line for line in lines if line.strip().startswith("ServiceProfile/a-second "))
    assert "Accepted=False Conflicted" in second and "CONFLICTED" in second
    assert condition(loser, "Accepted")["message"] in text
    assert "ConfigMap/z-first-config  exists, owned by ServiceProfile/z-first" in text
    assert f"last sync {sb['status']['lastSyncTime']}" in text
    assert f"next sync {sb['status']['nextSyncTime']}" in text
    assert "Secret/db  exists, owned by SecretBinding/db" in text
    assert password not in text  # no secret value, ever

    # -o json: the same content.
    out = _run(cluster, "explain", "deployment/web", "-n", namespace, "-o", "json")
    assert out.returncode == 0, out.stderr
    assert password not in out.stdout
    doc = json.loads(out.stdout)
    owned = {(g["kind"], g["resource"]): g["paths"] for g in doc["owned"]}
    assert owned[("ServiceProfile", "z-first")] == sp_fields
    assert owned[("HealthPolicy", "probes")] == hp_fields
    assert owned[("SecretBinding", "db")] == sb_fields
    res = {(r["kind"], r["name"]): r for r in doc["resources"]}
    assert res[("ServiceProfile", "a-second")]["conflicted"] is True
    assert res[("ServiceProfile", "a-second")]["accepted"]["reason"] == "Conflicted"
    assert res[("ServiceProfile", "z-first")]["conflicted"] is False
    assert res[("SecretBinding", "db")]["secret"] == {
        "targetSecret": "db",
        "lastSyncTime": sb["status"]["lastSyncTime"],
        "nextSyncTime": sb["status"]["nextSyncTime"],
    }
    assert {"kind": "Secret", "name": "db", "state": "exists, owned by SecretBinding/db"} in res[
        ("SecretBinding", "db")
    ]["children"]

    # The kubectl plugin: kubectl finds kubectl-appinfra on PATH and runs the same CLI.
    plugin = _run(cluster, "explain", "deployment/web", "-n", namespace, kubectl=True)
    assert plugin.returncode == 0, plugin.stderr
    assert plugin.stdout == text

    # A reader who may not list Secrets (as the `view` ClusterRole): the rest is shown,
    # and a note says what is missing.
    reader = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
              "metadata": {"name": "reader", "namespace": namespace},
              "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
                        {"apiGroups": ["appinfra.dev"], "resources": ["*"], "verbs": ["list"]},
                        {"apiGroups": ["", "autoscaling", "networking.k8s.io", "policy"],
                         "resources": ["configmaps", "horizontalpodautoscalers",
                                       "networkpolicies", "poddisruptionbudgets"],
                         "verbs": ["list"]}]}  # fmt: skip
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "reader", "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": "reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "default",
                             "namespace": namespace}]}  # fmt: skip
    apply(cluster, reader, binding)
    env = {**os.environ, "KUBECONFIG": str(_default_sa_kubeconfig(cluster, namespace, tmp_path))}
    viewed = subprocess.run(
        [tool("appinfra"), "explain", "deployment/web", "-n", namespace],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert viewed.returncode == 0, viewed.stderr
    assert "note: Secrets not shown: no access to list them" in viewed.stdout
    assert "Secret/db  unknown (no access to Secrets)" in viewed.stdout
    assert viewed.stdout.split("Resources attached:")[0] == text.split("Resources attached:")[0]
    assert "ConfigMap/z-first-config  exists, owned by ServiceProfile/z-first" in viewed.stdout


def _token(cluster: Cluster, namespace: str) -> str:
    """A token of the namespace's default ServiceAccount (no RBAC: can read nothing)."""
    try:
        return cluster.token_for(namespace, "default")
    except ApiException as exc:
        if exc.status == 404:  # the ServiceAccount controller has not made it yet
            return ""
        raise


def _default_sa_kubeconfig(cluster: Cluster, namespace: str, folder: Path) -> Path:
    """A kubeconfig as the namespace's default ServiceAccount (no RBAC of its own)."""
    tokens: list[str] = []
    wait_until(lambda: tokens.append(_token(cluster, namespace)) is None and tokens[-1] != "",
               30, "the default ServiceAccount's token")  # fmt: skip
    kubeconfig = folder / "default-sa.kubeconfig"
    kubeconfig.write_text(
        json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "k", "cluster": {"server": cluster.server,
                                                   "certificate-authority": str(cluster.ca_file)}}],
            "users": [{"name": "u", "user": {"token": tokens[-1]}}],
            "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        })
    )  # fmt: skip
    return kubeconfig


def test_explain_errors_are_one_line_and_exit_1(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    missing = _run(cluster, "explain", "deployment/nope", "-n", namespace)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f'appinfra explain: deployment "nope" not found in namespace "{namespace}"'
    )
    assert "Traceback" not in missing.stderr

    # No access: a ServiceAccount without any RBAC.
    kubeconfig = _default_sa_kubeconfig(cluster, namespace, tmp_path)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    denied = subprocess.run(
        [tool("appinfra"), "explain", "deployment/web", "-n", namespace],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert denied.returncode == 1
    assert denied.stderr.startswith("appinfra explain: no access:"), denied.stderr
    assert len(denied.stderr.strip().splitlines()) == 1

    empty = tmp_path / "empty"
    empty.write_text("")
    env = {**os.environ, "KUBECONFIG": str(empty), "HOME": str(tmp_path)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    none = subprocess.run(
        [tool("appinfra"), "explain", "deployment/web"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert none.returncode == 1
    assert none.stderr.startswith("appinfra explain: no kube context"), none.stderr
    assert len(none.stderr.strip().splitlines()) == 1
