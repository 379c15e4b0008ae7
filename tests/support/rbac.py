"""Run the operator with exactly the chart's RBAC: rules from `helm template`, a
ServiceAccount bound to them, and a kubeconfig holding that account's token."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.kube import Cluster
from tests.support.servers import REPO, tool

Rule = dict[str, Any]


def chart_rules(secret_stores: dict[str, Any] | None = None) -> list[Rule]:
    """Every rule the chart grants the operator in cluster-wide mode (ClusterRole + Roles,
    merged; not the aggregated roles for users), for
    these `secretStores` values (some rules depend on them: TokenRequest only for the
    service accounts of kubernetes-auth stores)."""
    with tempfile.TemporaryDirectory() as home:
        env = {"HELM_CACHE_HOME": home, "HELM_CONFIG_HOME": home, "HELM_DATA_HOME": home,
               "PATH": "/usr/bin:/bin"}  # fmt: skip
        values = Path(home) / "values.yaml"
        values.write_text(yaml.safe_dump({"secretStores": secret_stores or {}}))
        out = subprocess.run(
            [tool("helm"), "template", "appinfra", str(REPO / "charts" / "appinfra"),
             "--namespace", "appinfra-system", "-f", str(values)],
            capture_output=True, text=True, check=True, env=env,
        ).stdout  # fmt: skip
    rules: list[Rule] = []
    for doc in yaml.safe_load_all(out):
        if doc and doc.get("kind") in ("ClusterRole", "Role") and not aggregated(doc):
            rules.extend(doc.get("rules") or [])
    return rules


def aggregated(role: dict[str, Any]) -> bool:
    """A ClusterRole the chart aggregates into the built-in admin/edit/view roles: rights of
    the people using appinfra, never the operator's (it is bound to none of them)."""
    labels = role.get("metadata", {}).get("labels") or {}
    return any(key.startswith("rbac.authorization.k8s.io/aggregate-to-") for key in labels)


def without(rules: list[Rule], group: str, resource: str, verb: str) -> list[Rule]:
    """`rules` minus one verb on one resource (the rest of that rule stays)."""
    out = []
    for rule in rules:
        if group in rule.get("apiGroups", []) and resource in rule.get("resources", []):
            others = [r for r in rule["resources"] if r != resource]
            if others:
                out.append({**rule, "resources": others})
            verbs = [v for v in rule["verbs"] if v != verb]
            if verbs:
                out.append({**rule, "apiGroups": [group], "resources": [resource], "verbs": verbs})
        else:
            out.append(rule)
    return out


def service_account_kubeconfig(
    cluster: Cluster, namespace: str, name: str, rules: list[Rule], path: Path
) -> Path:
    """A ServiceAccount `name` bound to `rules` cluster-wide; returns a kubeconfig for it."""
    with cluster.api() as api:
        core = client.CoreV1Api(api)
        rbac = client.RbacAuthorizationV1Api(api)
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        except ApiException as exc:
            if exc.status != 409:
                raise
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
        rbac.create_cluster_role(
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": name}, "rules": rules}
        )  # fmt: skip
        rbac.create_cluster_role_binding(
            client.V1ClusterRoleBinding(
                metadata=client.V1ObjectMeta(name=name),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=name
                ),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name,
                                               namespace=namespace)],
            )
        )  # fmt: skip
        spec = client.V1TokenRequestSpec(audiences=[], expiration_seconds=4 * 3600)
        token = core.create_namespaced_service_account_token(
            name, namespace, client.AuthenticationV1TokenRequest(spec=spec)
        ).status.token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {
            "server": cluster.server, "certificate-authority": str(cluster.ca_file)}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": name}}],
        "current-context": "c",
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path
