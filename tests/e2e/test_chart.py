"""`helm install` of the chart into a real API server, and its RBAC checked there.

Two releases: one cluster-wide, one with `watchNamespaces`. `kubectl auth can-i
--as system:serviceaccount:...` asks the API server's own authorizer (RBAC is on),
so every "yes" below is a rule the chart really grants and every "no" one it really
withholds. Pods never start here (no nodes, no image): nothing waits for them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.support.kube import Cluster
from tests.unit.test_chart import (
    CHART,
    CLUSTER_SCOPED_RULES,
    LEASE_RULES,
    NAMESPACED_RULES,
    Rule,
    helm,
)

CRD_NAMES = sorted(p.stem for p in (CHART / "crds").glob("*.yaml"))


@dataclass
class Release:
    name: str
    namespace: str
    home: Path
    cluster: Cluster
    values: dict[str, Any]
    created: list[str]  # namespaces made for the test, besides the release's own

    @property
    def user(self) -> str:
        """The chart's ServiceAccount (release name contains "appinfra": no suffix)."""
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    @cached_property
    def api(self) -> client.ApiClient:
        """Authenticated as the ServiceAccount itself, with a TokenRequest token (as in a pod)."""
        return self.cluster.api_with_token(self.cluster.token_for(self.namespace, self.name))

    def can(self, verb: str, resource: str, namespace: str | None = None, *extra: str) -> bool:
        """`kubectl auth can-i ... --as system:serviceaccount:...`, as an admin would check,
        with the groups a real ServiceAccount token carries (bindings to them count too)."""
        where = ["-n", namespace] if namespace else []
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{self.namespace}"]
        impersonate = ["--as", self.user, *(f"--as-group={group}" for group in groups)]
        proc = self.cluster.kubectl(
            "auth", "can-i", verb, resource, *extra, *where, *impersonate, check=False
        )
        answer = proc.stdout.strip()
        assert answer in ("yes", "no"), f"can-i {verb} {resource}: {proc.stderr}{proc.stdout}"
        return answer == "yes"

    def allowed(self, rule: Rule, namespace: str | None, name: str | None = None) -> bool:
        """A SelfSubjectAccessReview sent with the ServiceAccount's own token."""
        group, resource, verb = rule
        resource, _, subresource = resource.partition("/")
        attributes = client.V1ResourceAttributes(
            group=group, resource=resource, subresource=subresource or None, verb=verb,
            namespace=namespace, name=name,
        )  # fmt: skip
        review = client.AuthorizationV1Api(self.api).create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes)
            )
        )
        return bool(review.status.allowed)

    def denied(self, rules: frozenset[Rule], namespace: str | None) -> list[Rule]:
        """The rules the API server does not grant the ServiceAccount in `namespace`."""
        return [rule for rule in sorted(rules) if not self.allowed(rule, namespace)]


def _install(
    cluster: Cluster, home: Path, values: dict[str, Any], create: list[str]
) -> Iterator[Release]:
    suffix = uuid.uuid4().hex[:6]
    name = f"appinfra-{suffix}"
    release = Release(name, name, home, cluster, values, create)
    for namespace in create:
        cluster.kubectl("create", "namespace", namespace)
    values_path = home / f"{release.name}.yaml"
    values_path.write_text(yaml.safe_dump(values))
    # --force-conflicts: the CRDs may exist already, applied by the session's `crds`
    # fixture under kubectl's field manager; helm (server-side apply) then adopts them.
    helm(
        "install", release.name, str(CHART), "--namespace", release.namespace,
        "--create-namespace", "--kubeconfig", str(cluster.kubeconfig), "-f", str(values_path),
        "--force-conflicts", "--timeout", "2m", home=home,
    )  # fmt: skip
    try:
        yield release
    finally:
        if "api" in release.__dict__:
            release.api.close()
        helm(
            "uninstall", release.name, "--namespace", release.namespace,
            "--kubeconfig", str(cluster.kubeconfig), home=home, check=False,
        )  # fmt: skip
        for namespace in [release.namespace, *create]:
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm")


@pytest.fixture(scope="module")
def cluster_wide(cluster: Cluster, helm_home: Path) -> Iterator[Release]:
    app = f"app-{uuid.uuid4().hex[:6]}"
    yield from _install(cluster, helm_home, {"replicas": 2}, [app])


@pytest.fixture(scope="module")
def app_namespace(cluster_wide: Release) -> str:
    """An ordinary application namespace, unrelated to the release."""
    return cluster_wide.created[0]


@pytest.fixture(scope="module")
def namespaced(cluster: Cluster, helm_home: Path) -> Iterator[Release]:
    suffix = uuid.uuid4().hex[:6]
    watched, other, ops = f"shop-{suffix}", f"other-{suffix}", f"ops-{suffix}"
    values = {
        "watchNamespaces": [watched],
        "secretStores": {
            "vault": {
                "vault": {
                    "address": "https://vault.vault:8200",
                    "auth": {"token": {"secretRef": {"namespace": ops, "name": "vt", "key": "t"}}},
                },
                "allowedNamespaces": [watched],
            }
        },
    }
    yield from _install(cluster, helm_home, values, [watched, other, ops])


# --- install ------------------------------------------------------------------------------------


def test_install_creates_every_object(cluster_wide: Release) -> None:
    r, kubectl = cluster_wide, cluster_wide.cluster.kubectl
    cluster_name = f"{r.name}-{r.namespace}"
    kubectl("-n", r.namespace, "get", f"deployment/{r.name}", f"serviceaccount/{r.name}",
            f"configmap/{r.name}-config", f"service/{r.name}-metrics",
            f"poddisruptionbudget/{r.name}", f"role/{r.name}-leader-election",
            f"rolebinding/{r.name}-leader-election")  # fmt: skip
    kubectl("get", f"clusterrole/{cluster_name}", f"clusterrolebinding/{cluster_name}")
    deployment = r.cluster.kubectl_json("-n", r.namespace, "get", f"deployment/{r.name}")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == r.name
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    status = helm("status", r.name, "-n", r.namespace, "--kubeconfig",
                  str(r.cluster.kubeconfig), home=r.home).stdout  # fmt: skip
    assert "STATUS: deployed" in status


def test_crds_are_established(cluster_wide: Release) -> None:
    crds = [f"crd/{name}" for name in CRD_NAMES]
    assert len(crds) == 4
    cluster_wide.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds)
    listed = cluster_wide.cluster.kubectl("get", "appinfra", "-A")
    assert listed.returncode == 0


def test_crds_apply_cleanly_under_a_second_field_manager(cluster_wide: Release) -> None:
    """A CRD installed by one tool (helm) and re-applied by another (kubectl, Argo CD)
    must not conflict: the applied manifest has to be exactly what the server stores."""
    proc = cluster_wide.cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "--field-manager=second-manager",
        "-f", str(CHART / "crds"), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_config_map_holds_the_rendered_configuration(namespaced: Release) -> None:
    config_map = namespaced.cluster.kubectl_json(
        "-n", namespaced.namespace, "get", f"configmap/{namespaced.name}-config"
    )
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert config["secretStores"] == namespaced.values["secretStores"]


# --- RBAC, cluster-wide ---------------------------------------------------------------------------


def test_service_account_may_do_everything_the_operator_needs(
    cluster_wide: Release, app_namespace: str
) -> None:
    r = cluster_wide
    assert r.denied(NAMESPACED_RULES, app_namespace) == []
    assert r.denied(CLUSTER_SCOPED_RULES, None) == []
    assert r.denied(LEASE_RULES, r.namespace) == []


@pytest.mark.parametrize(
    ("verb", "resource", "extra"),
    [
        ("delete", "deployments.apps", ()),
        ("create", "deployments.apps", ()),
        ("update", "deployments.apps", ()),
        ("update", "configmaps", ()),
        ("list", "pods", ()),
        ("delete", "serviceprofiles.appinfra.dev", ()),
        ("create", "serviceprofiles.appinfra.dev", ()),
        ("delete", "ingresses.networking.k8s.io", ()),
        ("patch", "services", ()),
        ("get", "serviceaccounts", ()),
        ("create", "serviceaccounts", ()),
        ("create", "leases.coordination.k8s.io", ()),
        ("create", "pods", ("--subresource=exec",)),
    ],
)
def test_service_account_may_not_do_more_in_a_namespace(
    cluster_wide: Release, app_namespace: str, verb: str, resource: str, extra: tuple[str, ...]
) -> None:
    assert not cluster_wide.can(verb, resource, app_namespace, *extra)


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        ("bind", "clusterroles.rbac.authorization.k8s.io"),
        ("escalate", "clusterroles.rbac.authorization.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
        ("delete", "namespaces"),
        ("impersonate", "users"),
        ("create", "certificatesigningrequests.certificates.k8s.io"),
        ("get", "nodes"),
    ],
)
def test_service_account_may_not_touch_the_cluster(
    cluster_wide: Release, verb: str, resource: str
) -> None:
    assert not cluster_wide.can(verb, resource)


# --- RBAC, watchNamespaces ------------------------------------------------------------------------


def test_namespaced_release_has_the_rights_in_watched_namespaces_only(namespaced: Release) -> None:
    watched, other, _ = namespaced.created
    assert namespaced.denied(NAMESPACED_RULES, watched) == []
    assert namespaced.denied(CLUSTER_SCOPED_RULES, None) == []
    assert namespaced.denied(LEASE_RULES, namespaced.namespace) == []
    granted_elsewhere = [
        (ns, rule)
        for ns in (other, "kube-system", "default")
        for rule in sorted(NAMESPACED_RULES | LEASE_RULES)
        if namespaced.allowed(rule, ns)
    ]
    assert granted_elsewhere == []


@pytest.mark.parametrize(
    ("verb", "resource", "namespace"),
    [
        ("get", "secrets", "kube-system"),
        ("list", "secrets", None),
        ("list", "configmaps", None),
        ("watch", "deployments.apps", None),
        ("list", "serviceprofiles.appinfra.dev", None),
        ("create", "clusterroles.rbac.authorization.k8s.io", None),
    ],
)
def test_namespaced_release_has_no_cluster_wide_rights(
    namespaced: Release, verb: str, resource: str, namespace: str | None
) -> None:
    flags = ("--all-namespaces",) if namespace is None else ()
    assert not namespaced.can(verb, resource, namespace, *flags)


def test_namespaced_release_reads_exactly_the_store_credential(namespaced: Release) -> None:
    store = namespaced.values["secretStores"]["vault"]
    ref = store["vault"]["auth"]["token"]["secretRef"]
    assert namespaced.can("get", f"secrets/{ref['name']}", ref["namespace"])
    assert not namespaced.can("get", "secrets/another", ref["namespace"])
    assert not namespaced.can("list", "secrets", ref["namespace"])
    assert not namespaced.can("patch", f"secrets/{ref['name']}", ref["namespace"])
