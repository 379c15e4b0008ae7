"""ServiceProfile against the real API server and controller-manager, driven by a
real `appinfra run` process. Each test asserts on what a user sees with kubectl."""

from __future__ import annotations

import copy
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import SYSTEM_NAMESPACE, Operator
from tests.support.audit import service_account_user, writes_by
from tests.support.kube import Cluster
from tests.support.objects import (
    apply,
    condition,
    deployment,
    events_for,
    fields_of,
    get,
    managers,
    spec_and_our_writes,
    wait_condition,
    wait_exists,
    wait_gone,
)
from tests.support.rbac import chart_rules, service_account_kubeconfig
from tests.support.servers import tool, wait_until

SP = "serviceprofile"
MANAGER = "appinfra-serviceprofile"


def profile(namespace: str, name: str, target: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": "ServiceProfile",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"targetRef": {"kind": "Deployment", "name": target}, **spec},
    }


FULL_SPEC: dict[str, Any] = {
    "config": {
        "data": {
            "DB_HOST": "${DB_HOST}",
            "DB_PORT": "${DB_PORT:5432}",
            "LITERAL": "$${NOT_A_VAR}",
            "REGION": "${REGION}",
        },
        "files": {"app.yaml": "name: {{ APP_NAME }}\nregion: {{ REGION }}\n"},
        "variables": {"APP_NAME": "payments", "DB_HOST": "db.shop"},
        "variablesFrom": [{"configMapRef": {"name": "env-settings"}}],
        "inject": "EnvFrom",
    },
    "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "cpu": {"averageUtilization": 70}},
    "network": {
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}]}],
        "egress": [],
        "allowDNS": True,
    },
    "rollout": {"maxSurge": "50%", "maxUnavailable": 0, "minReadySeconds": 5,
                "progressDeadlineSeconds": 300, "revisionHistoryLimit": 4},
    "disruption": {"minAvailable": 1},
}  # fmt: skip


def env_settings(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "env-settings", "namespace": namespace},
        "data": {"REGION": "eu-west-1", "DB_HOST": "overridden-by-variables"},
    }


def owned_by(obj: dict[str, Any], kind: str, name: str, uid: str) -> bool:
    labels = obj["metadata"].get("labels", {})
    refs = obj["metadata"].get("ownerReferences", [])
    return (
        labels.get("app.kubernetes.io/managed-by") == "appinfra"
        and labels.get("appinfra.dev/owner-kind") == kind
        and labels.get("appinfra.dev/owner-name") == name
        and any(r["uid"] == uid and r.get("controller") for r in refs)
    )


def test_every_section_produces_its_object(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, env_settings(namespace), deployment(namespace, "payments", ("app", "sidecar")))
    apply(cluster, profile(namespace, "payments", "payments", **FULL_SPEC))
    sp = wait_condition(cluster, SP, namespace, "payments", "Ready", "True", "Reconciled")
    assert condition(sp, "Accepted")["status"] == "True"
    assert sp["status"]["replicaRange"] == "2-5"
    uid = sp["metadata"]["uid"]

    cm = get(cluster, "configmap", namespace, "payments-config")
    assert cm is not None and owned_by(cm, "ServiceProfile", "payments", uid)
    assert cm["data"] == {
        "DB_HOST": "db.shop",  # variables win over variablesFrom
        "DB_PORT": "5432",  # the default
        "LITERAL": "${NOT_A_VAR}",  # $${ is a literal
        "REGION": "eu-west-1",  # from variablesFrom
        "app.yaml": "name: payments\nregion: eu-west-1\n",
    }

    hpa = get(cluster, "hpa", namespace, "payments")
    assert hpa is not None and owned_by(hpa, "ServiceProfile", "payments", uid)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "payments"
    }  # fmt: skip
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70

    np = get(cluster, "networkpolicy", namespace, "payments")
    assert np is not None and owned_by(np, "ServiceProfile", "payments", uid)
    assert np["spec"]["podSelector"] == {"matchLabels": {"app": "payments"}}
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    dns_ports = {(p["protocol"], p["port"]) for p in np["spec"]["egress"][-1]["ports"]}
    assert dns_ports == {("UDP", 53), ("TCP", 53)}

    pdb = get(cluster, "pdb", namespace, "payments")
    assert pdb is not None and owned_by(pdb, "ServiceProfile", "payments", uid)
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == {"matchLabels": {"app": "payments"}}

    dep = get(cluster, "deployment", namespace, "payments")
    assert dep is not None
    assert dep["metadata"]["annotations"]["appinfra.dev/serviceprofile"] == "payments"
    assert MANAGER in managers(dep)
    spec = dep["spec"]
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": "50%", "maxUnavailable": 0}
    assert (spec["minReadySeconds"], spec["progressDeadlineSeconds"]) == (5, 300)
    assert spec["revisionHistoryLimit"] == 4
    assert '"f:replicas"' not in fields_of(dep, MANAGER)  # never ours: the HPA owns it
    for container in spec["template"]["spec"]["containers"]:
        assert {"configMapRef": {"name": "payments-config"}} in container["envFrom"]
        assert container["image"] == "registry.k8s.io/pause:3.10"  # user's fields kept
    assert len(spec["template"]["metadata"]["annotations"]["appinfra.dev/config-hash"]) == 32

    reasons = {e["reason"] for e in events_for(cluster, namespace, "payments")}
    assert "Applied" in reasons


def test_volume_injection_mounts_every_container(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "api", ("app", "worker")))
    config = {"data": {"A": "1"}, "inject": "Volume", "mountPath": "/etc/app"}
    apply(cluster, profile(namespace, "api", "api", config=config))
    wait_condition(cluster, SP, namespace, "api", "Ready", "True")
    pod = get(cluster, "deployment", namespace, "api")["spec"]["template"]["spec"]  # type: ignore[index]
    volume = next(v for v in pod["volumes"] if v["name"] == "appinfra-config")
    assert volume["configMap"]["name"] == "api-config"
    for container in pod["containers"]:
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts == {"/etc/app": "appinfra-config"}
        assert "envFrom" not in container


def replicasets(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json("-n", namespace, "get", "rs")["items"]
    return [
        rs for rs in items
        if any(r["name"] == name for r in rs["metadata"].get("ownerReferences", []))
    ]  # fmt: skip


def test_config_change_rolls_out_a_new_replicaset(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "web"))
    apply(cluster, profile(namespace, "web", "web", config={"data": {"MODE": "blue"}}))
    wait_condition(cluster, SP, namespace, "web", "Ready", "True")
    first = get(cluster, "deployment", namespace, "web")
    template_hash = first["spec"]["template"]  # type: ignore[index]

    def settled() -> bool:
        # The controller-manager has a ReplicaSet for the current pod template.
        dep = get(cluster, "deployment", namespace, "web")
        return bool(
            dep["spec"]["template"] == template_hash  # type: ignore[index]
            and dep.get("status", {}).get("observedGeneration") == dep["metadata"]["generation"]  # type: ignore[union-attr,index]
        )

    wait_until(settled, 60, "the Deployment to be observed by the controller-manager")
    before = len(replicasets(cluster, namespace, "web"))
    old_hash = first["spec"]["template"]["metadata"]["annotations"]["appinfra.dev/config-hash"]  # type: ignore[index]

    apply(cluster, profile(namespace, "web", "web", config={"data": {"MODE": "green"}}))
    wait_condition(cluster, SP, namespace, "web", "Ready", "True")

    def new_hash() -> bool:
        dep = get(cluster, "deployment", namespace, "web")
        annotations = dep["spec"]["template"]["metadata"]["annotations"]  # type: ignore[index]
        return bool(annotations["appinfra.dev/config-hash"] != old_hash)

    wait_until(new_hash, 30, "a new config hash on the pod template")
    wait_until(
        lambda: len(replicasets(cluster, namespace, "web")) == before + 1, 60, "a new ReplicaSet"
    )
    assert get(cluster, "configmap", namespace, "web-config")["data"] == {"MODE": "green"}  # type: ignore[index]

    # rolloutOnChange: false leaves the pod template alone.
    quiet = {"data": {"MODE": "red"}, "rolloutOnChange": False}
    apply(cluster, profile(namespace, "web", "web", config=quiet))
    wait_condition(cluster, SP, namespace, "web", "Ready", "True")
    wait_until(
        lambda: get(cluster, "configmap", namespace, "web-config")["data"] == {"MODE": "red"},  # type: ignore[index]
        30,
        "the ConfigMap update",
    )
    dep = get(cluster, "deployment", namespace, "web")
    assert "appinfra.dev/config-hash" not in dep["spec"]["template"]["metadata"].get(  # type: ignore[index]
        "annotations", {}
    )


def test_missing_variables_are_named_and_nothing_is_written(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "orders"))
    before = get(cluster, "deployment", namespace, "orders")
    config = {"data": {"A": "${FIRST}", "B": "${SECOND}-${FIRST}", "C": "${OK:yes}"}}
    apply(
        cluster,
        profile(namespace, "orders", "orders", config=config, disruption={"minAvailable": 1}),
    )
    sp = wait_condition(cluster, SP, namespace, "orders", "Accepted", "False", "Invalid")
    message = condition(sp, "Accepted")["message"]
    assert "FIRST" in message and "SECOND" in message and "OK" not in message.split(":")[-1]
    assert condition(sp, "Ready")["status"] == "False"
    assert get(cluster, "configmap", namespace, "orders-config") is None
    assert get(cluster, "pdb", namespace, "orders") is None
    after = get(cluster, "deployment", namespace, "orders")
    assert spec_and_our_writes(after) == spec_and_our_writes(before)
    warnings = [e for e in events_for(cluster, namespace, "orders") if e["type"] == "Warning"]
    assert any(e["reason"] == "Invalid" for e in warnings)


def test_target_not_found_then_converges_when_created(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, profile(namespace, "late", "late", disruption={"maxUnavailable": 1}))
    sp = wait_condition(cluster, SP, namespace, "late", "Accepted", "False", "TargetNotFound")
    assert "Deployment late not found" in condition(sp, "Accepted")["message"]
    generation = sp["metadata"]["generation"]

    apply(cluster, deployment(namespace, "late"))
    sp = wait_condition(cluster, SP, namespace, "late", "Ready", "True", "Reconciled")
    assert sp["metadata"]["generation"] == generation  # the profile itself was not touched
    assert get(cluster, "pdb", namespace, "late")["spec"]["maxUnavailable"] == 1  # type: ignore[index]


def test_removing_sections_and_deleting_the_profile_cleans_up(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, env_settings(namespace), deployment(namespace, "shop"))
    apply(cluster, profile(namespace, "shop", "shop", **FULL_SPEC))
    wait_condition(cluster, SP, namespace, "shop", "Ready", "True")

    trimmed = {k: v for k, v in FULL_SPEC.items() if k not in ("autoscaling", "network")}
    apply(cluster, profile(namespace, "shop", "shop", **trimmed))
    wait_condition(cluster, SP, namespace, "shop", "Ready", "True")
    wait_gone(cluster, "hpa", namespace, "shop")
    wait_gone(cluster, "networkpolicy", namespace, "shop")
    assert get(cluster, "pdb", namespace, "shop") is not None

    cluster.kubectl("-n", namespace, "delete", SP, "shop", "--wait=true", "--timeout=60s")
    for kind, name in (("configmap", "shop-config"), ("pdb", "shop")):
        wait_gone(cluster, kind, namespace, name)  # garbage-collected through ownerReferences
    dep = get(cluster, "deployment", namespace, "shop")
    assert dep is not None
    assert MANAGER not in managers(dep)
    assert "appinfra.dev/serviceprofile" not in dep["metadata"].get("annotations", {})
    pod = dep["spec"]["template"]
    assert "appinfra.dev/config-hash" not in pod["metadata"].get("annotations", {})
    container = pod["spec"]["containers"][0]
    assert "envFrom" not in container
    # What the Deployment's own manager set is still there.
    assert container["image"] == "registry.k8s.io/pause:3.10"
    assert dep["metadata"]["labels"] == {"team": "shop"}


def test_drift_on_children_is_reverted(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, env_settings(namespace), deployment(namespace, "drift"))
    apply(cluster, profile(namespace, "drift", "drift", **FULL_SPEC))
    wait_condition(cluster, SP, namespace, "drift", "Ready", "True")
    original = get(cluster, "configmap", namespace, "drift-config")

    cluster.kubectl("-n", namespace, "delete", "configmap", "drift-config")
    recreated = wait_exists(cluster, "configmap", namespace, "drift-config", timeout=20)
    assert recreated["data"] == original["data"]  # type: ignore[index]

    cluster.kubectl(
        "-n", namespace, "patch", "hpa", "drift", "--type=merge", "-p", '{"spec":{"maxReplicas":9}}'
    )
    wait_until(
        lambda: get(cluster, "hpa", namespace, "drift")["spec"]["maxReplicas"] == 5,  # type: ignore[index]
        20,
        "the HPA edit to be reverted",
    )
    cluster.kubectl(
        "-n", namespace, "patch", "deployment", "drift", "--type=merge",
        "-p", '{"spec":{"minReadySeconds":42}}',
    )  # fmt: skip
    wait_until(
        lambda: get(cluster, "deployment", namespace, "drift")["spec"]["minReadySeconds"] == 5,  # type: ignore[index]
        20,
        "the Deployment edit to be reverted",
    )


def test_second_profile_on_a_deployment_is_conflicted(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    # The older profile's name sorts last: only "the oldest wins" makes it the winner.
    apply(cluster, deployment(namespace, "twin"))
    apply(cluster, profile(namespace, "z-first", "twin", disruption={"minAvailable": 1}))
    wait_condition(cluster, SP, namespace, "z-first", "Ready", "True")
    time.sleep(1.5)  # creationTimestamp has whole seconds: the second one is strictly newer
    apply(cluster, profile(namespace, "a-second", "twin", autoscaling={"maxReplicas": 3}))
    sp = wait_condition(cluster, SP, namespace, "a-second", "Accepted", "False", "Conflicted")
    assert "ServiceProfile z-first already targets" in condition(sp, "Accepted")["message"]
    assert get(cluster, "hpa", namespace, "a-second") is None
    dep = get(cluster, "deployment", namespace, "twin")
    assert dep["metadata"]["annotations"]["appinfra.dev/serviceprofile"] == "z-first"  # type: ignore[index]

    # The winner leaves: the rival takes over by itself.
    cluster.kubectl("-n", namespace, "delete", SP, "z-first", "--wait=true", "--timeout=60s")
    wait_condition(cluster, SP, namespace, "a-second", "Ready", "True", "Reconciled")
    wait_exists(cluster, "hpa", namespace, "a-second")


def _versions(cluster: Cluster, namespace: str) -> dict[str, str]:
    """When each appinfra field manager last wrote each object (managedFields times).

    Not resourceVersions: the controller-manager keeps writing status of PDBs, HPAs
    and Deployments, while a manager's entry only moves when that manager writes.
    """
    kinds = "serviceprofiles,configmaps,hpa,networkpolicies,pdb,deployments"
    items = cluster.kubectl_json("-n", namespace, "get", kinds, "--show-managed-fields")["items"]
    return {
        f"{i['kind']}/{i['metadata']['name']} {m['manager']} {m.get('subresource', '')}": m["time"]
        for i in items
        for m in i["metadata"].get("managedFields", [])
        if m["manager"].startswith("appinfra")
    }


def _reconciled(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('appinfra_reconcile_total{kind="ServiceProfile",result="success"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_restart_and_resync_with_nothing_changed_send_zero_writes(
    cluster: Cluster, operator: Operator, namespace: str, workdir: Path, audit_log: Path
) -> None:
    apply(cluster, env_settings(namespace))
    for i in range(3):
        apply(cluster, deployment(namespace, f"svc{i}"))
        apply(cluster, profile(namespace, f"svc{i}", f"svc{i}", **FULL_SPEC))
    for i in range(3):
        wait_condition(cluster, SP, namespace, f"svc{i}", "Ready", "True")

    def settled(name: str) -> bool:
        # The HPA (minReplicas 2) scales the Deployment by itself; wait for that write
        # so that only the operator's writes could change a resourceVersion below.
        dep = get(cluster, "deployment", namespace, name) or {}
        status = dep.get("status", {})
        return bool(
            dep.get("spec", {}).get("replicas") == 2
            and status.get("observedGeneration") == dep["metadata"]["generation"]
        )

    for i in range(3):
        wait_until(lambda i=i: settled(f"svc{i}"), 90, f"svc{i} scaled by its HPA")
    time.sleep(2)
    before = _versions(cluster, namespace)

    # A second, freshly started operator watching only this namespace: its whole
    # initial listing is a resync, and it resyncs again every second. It runs as its own
    # ServiceAccount, so the API server's audit log counts its writes, all of them (a
    # no-op apply too, which leaves managedFields alone), not its own metrics.
    account = f"operator-restart-{namespace}"
    kubeconfig = service_account_kubeconfig(
        cluster, SYSTEM_NAMESPACE, account, chart_rules(), workdir / f"{account}.kubeconfig"
    )
    fresh = Operator(cluster, workdir, account, "--namespace", namespace)
    fresh.process.argv.remove("--all-namespaces")
    fresh.process.env.update({"APPINFRA_RESYNC_SECONDS": "1", "KUBECONFIG": str(kubeconfig)})
    fresh.start()
    try:
        wait_until(lambda: _reconciled(fresh.metrics()) >= 6, 60, "the fresh operator to resync")
    finally:
        fresh.stop()
    # The log holds this namespace's writes: the session operator's, which made the children.
    session_operator = service_account_user(SYSTEM_NAMESPACE, "appinfra-operator")
    assert any(w.namespace == namespace for w in writes_by(audit_log, session_operator))
    # Its whole life, stop included, is the window: every write verb counts, Leases too.
    sent = writes_by(audit_log, service_account_user(SYSTEM_NAMESPACE, account), leases=True)
    assert sent == [], "a no-op resync wrote:\n" + "\n".join(map(str, sent))
    assert _versions(cluster, namespace) == before


def test_render_shows_what_the_operator_applies(
    cluster: Cluster, operator: Operator, namespace: str, tmp_path: Path
) -> None:
    objs = [env_settings(namespace), deployment(namespace, "same"),
            profile(namespace, "same", "same", **FULL_SPEC)]  # fmt: skip
    apply(cluster, *objs)
    wait_condition(cluster, SP, namespace, "same", "Ready", "True")
    files = tmp_path / "input.yaml"
    files.write_text(yaml.safe_dump_all(objs))
    proc = subprocess.run(
        [tool("appinfra"), "render", "-f", str(files)], capture_output=True, text=True, check=True
    )
    rendered = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert {d["kind"] for d in rendered} == {
        "ConfigMap", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "Deployment"
    }  # fmt: skip
    for want in rendered:
        live = get(cluster, want["kind"].lower(), namespace, want["metadata"]["name"])
        assert live is not None, want["metadata"]["name"]
        body = copy.deepcopy(want)
        body.pop("apiVersion")
        body["metadata"].pop("labels", None)
        body.pop("metadata")
        assert _contains(live, body), json.dumps({"want": body, "live": live}, indent=1)[:3000]


def _contains(live: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(live, dict) and all(
            k in live and _contains(live[k], v) for k, v in want.items()
        )
    if isinstance(want, list):
        return isinstance(live, list) and all(
            any(_contains(item, w) for item in live) for w in want
        )
    return bool(live == want)
