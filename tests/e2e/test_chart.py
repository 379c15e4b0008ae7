"""`helm install` of the chart into a real API server, and its RBAC checked there;
`helm test`, the CRD upgrade command, the roles aggregated for users, and Events
counted as the chart's operator posts them.

Two releases: one cluster-wide, one with `watchNamespaces`. `kubectl auth can-i
--as system:serviceaccount:...` asks the API server's own authorizer (RBAC is on),
so every "yes" below is a rule the chart really grants and every "no" one it really
withholds. The simulated nodes run no container, so the operator pods never serve
anything and nothing waits for them; `helm test` is driven as described at its test.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client

from tests.e2e.conftest import Operator
from tests.support.kube import Cluster
from tests.support.objects import apply, deployment, frozen
from tests.support.rbac import chart_rules, service_account_kubeconfig
from tests.support.servers import wait_until
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
    # The NetworkPolicy too, so the API server accepts what the chart renders for it.
    values = {"replicas": 2, "networkPolicy": {"enabled": True,
              "apiServer": {"cidrs": ["127.0.0.1/32"]}}}  # fmt: skip
    yield from _install(cluster, helm_home, values, [app])


@pytest.fixture(scope="module")
def app_namespace(cluster_wide: Release) -> str:
    """An ordinary application namespace, unrelated to the release."""
    return cluster_wide.created[0]


@pytest.fixture(scope="module")
def namespaced(cluster: Cluster, helm_home: Path) -> Iterator[Release]:
    suffix = uuid.uuid4().hex[:6]
    watched, other, ops = f"shop-{suffix}", f"other-{suffix}", f"ops-{suffix}"
    values = {
        # The CRDs and the roles for users come with every release; one is enough here.
        "rbac": {"aggregateClusterRoles": False},
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
    kubectl("get", f"clusterrole/{cluster_name}", f"clusterrolebinding/{cluster_name}",
            f"clusterrole/{cluster_name}-view", f"clusterrole/{cluster_name}-edit")  # fmt: skip
    kubectl("-n", r.namespace, "get", f"networkpolicy/{r.name}")
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


# --- roles aggregated for users -------------------------------------------------------------------


def _bound_account(cluster: Cluster, namespace: str, name: str, cluster_role: str) -> str:
    """A ServiceAccount bound, in `namespace` only, to a built-in ClusterRole; its user name."""
    cluster.kubectl("-n", namespace, "create", "serviceaccount", name)
    account = f"--serviceaccount={namespace}:{name}"
    cluster.kubectl("-n", namespace, "create", "rolebinding", name,
                    f"--clusterrole={cluster_role}", account)  # fmt: skip
    return f"system:serviceaccount:{namespace}:{name}"


def _as(user: str) -> list[str]:
    namespace = user.split(":")[2]
    return ["--as", user, "--as-group=system:serviceaccounts",
            f"--as-group=system:serviceaccounts:{namespace}"]  # fmt: skip


def _can(
    cluster: Cluster, user: str, verb: str, resource: str, namespace: str, *extra: str
) -> bool:
    """The API server's authorizer, asked with a SubjectAccessReview (`kubectl auth can-i`)."""
    proc = cluster.kubectl(
        "auth", "can-i", verb, resource, "-n", namespace, *extra, *_as(user), check=False
    )
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stderr
    return answer == "yes"


def _profile(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": "ServiceProfile",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"targetRef": {"kind": "Deployment", "name": name},
                 "config": {"data": {"MODE": "live"}}, **spec},
    }  # fmt: skip


def test_namespace_editors_manage_the_kinds_and_viewers_read_them(
    cluster_wide: Release, app_namespace: str
) -> None:
    """The built-in `edit` and `view` roles, bound in one namespace, cover the four kinds
    there through the chart's aggregated ClusterRoles; nothing else is granted."""
    cluster = cluster_wide.cluster
    editor = _bound_account(cluster, app_namespace, "editor", "edit")
    viewer = _bound_account(cluster, app_namespace, "viewer", "view")
    kinds = ["serviceprofiles", "secretbindings", "healthpolicies", "ratelimitpolicies"]
    # kube-controller-manager's aggregation controller copies the rules in shortly.
    wait_until(
        lambda: all(_can(cluster, editor, "create", f"{kind}.appinfra.dev", app_namespace)
                    for kind in kinds),
        30, "the chart's rules aggregated into the edit role",
    )  # fmt: skip
    for kind in kinds:
        resource = f"{kind}.appinfra.dev"
        for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
            assert _can(cluster, editor, verb, resource, app_namespace), (verb, kind)
        for verb in ("get", "list", "watch"):
            assert _can(cluster, viewer, verb, resource, app_namespace), (verb, kind)
        for verb in ("create", "patch", "delete"):
            assert not _can(cluster, viewer, verb, resource, app_namespace), (verb, kind)
        # Status is the operator's; and the binding is for this namespace only.
        status = "--subresource=status"
        assert _can(cluster, editor, "patch", resource, app_namespace)  # the same question...
        assert not _can(cluster, editor, "patch", resource, app_namespace, status)  # ...of status
        assert not _can(cluster, editor, "create", resource, cluster_wide.namespace)
    # And the real request, as the editor: the API server admits it.
    manifest = json.dumps(_profile(app_namespace, "by-editor"))
    cluster.kubectl("create", "-f", "-", *_as(editor), input=manifest)
    denied = cluster.kubectl("create", "-f", "-", *_as(viewer), input=manifest, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr
    listed = cluster.kubectl("-n", app_namespace, "get", "serviceprofiles", *_as(viewer))
    assert "by-editor" in listed.stdout


# --- helm test ----------------------------------------------------------------------------------


def _local(url: str, port: int) -> str:
    return urlsplit(url)._replace(netloc=f"127.0.0.1:{port}").geturl()


def _run_test_pod(release: Release, ports: dict[str, int], stop: threading.Event) -> None:
    """Stand in for the kubelet for the `helm test` Pod: run its container's command on
    this host, then report the Pod Succeeded or Failed by its exit code.

    The simulated nodes run no container, and there is no cluster DNS or Service
    network here. So the one substitution: the Service's `host:port` in the Pod's URLs
    becomes the local operator's port for that Service port's name. The script, its
    checks and the verdict are the chart's; `helm test` itself waits for the phase."""
    cluster, name = release.cluster, f"{release.name}-test-health"
    service = cluster.kubectl_json(
        "-n", release.namespace, "get", f"service/{release.name}-metrics"
    )
    by_port = {p["port"]: p["name"] for p in service["spec"]["ports"]}
    host = f"{release.name}-metrics.{release.namespace}.svc"
    while not stop.wait(0.2):
        proc = cluster.kubectl("-n", release.namespace, "get", f"pod/{name}", "-o", "json",
                               check=False)  # fmt: skip
        if proc.returncode != 0:
            continue
        pod = json.loads(proc.stdout)
        if pod["metadata"].get("deletionTimestamp") or pod["status"].get("phase") in (
            "Succeeded",
            "Failed",
        ):
            continue
        (spec,) = pod["spec"]["containers"]
        env = {e["name"]: e["value"] for e in spec["env"]}
        for key, url in env.items():
            parts = urlsplit(url)
            assert parts.hostname == host, url  # the Pod asks the chart's Service
            env[key] = _local(url, ports[by_port[parts.port]])
        assert spec["command"][0] == "python"
        run = subprocess.run([sys.executable, *spec["command"][1:], *spec["args"]],
                             env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ok = run.returncode == 0
        state = {"exitCode": run.returncode, "reason": "Completed" if ok else "Error",
                 "message": (run.stdout + run.stderr)[-500:], "finishedAt": now}  # fmt: skip
        status = {"status": {
            "phase": "Succeeded" if run.returncode == 0 else "Failed",
            "containerStatuses": [{"name": spec["name"], "image": spec["image"], "imageID": "",
                                   "ready": False, "restartCount": 0,
                                   "state": {"terminated": state}}],
        }}  # fmt: skip
        cluster.kubectl("-n", release.namespace, "patch", f"pod/{name}", "--subresource=status",
                        "--type=merge", "-p", json.dumps(status))  # fmt: skip


def _helm_test(release: Release, ports: dict[str, int]) -> subprocess.CompletedProcess[str]:
    stop = threading.Event()
    kubelet = threading.Thread(target=_run_test_pod, args=(release, ports, stop), daemon=True)
    kubelet.start()
    try:
        return helm("test", release.name, "-n", release.namespace, "--kubeconfig",
                    str(release.cluster.kubeconfig), "--timeout", "2m", home=release.home,
                    check=False)  # fmt: skip
    finally:
        stop.set()
        kubelet.join(timeout=30)


def test_helm_test_passes_when_the_operator_answers(
    cluster_wide: Release, operator: Operator
) -> None:
    ports = {"health": operator.health_port, "metrics": operator.metrics_port}
    proc = _helm_test(cluster_wide, ports)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Succeeded" in proc.stdout


def test_helm_test_fails_when_the_operator_does_not_answer(cluster_wide: Release) -> None:
    closed = 9  # discard: nothing listens on loopback
    proc = _helm_test(cluster_wide, {"health": closed, "metrics": closed})
    assert proc.returncode != 0
    # The failed Pod is kept, with the script's reason, for `kubectl logs`/describe.
    pod = cluster_wide.cluster.kubectl_json(
        "-n", cluster_wide.namespace, "get", f"pod/{cluster_wide.name}-test-health"
    )
    assert pod["status"]["phase"] == "Failed"
    message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert "no answer from the operator" in message


# --- CRDs on upgrade ----------------------------------------------------------------------------

NEW_FIELD = "upgradeProbe"


def _upgrade_command(chart: Path) -> tuple[list[str], list[str]]:
    """The command the chart's README documents, for `chart`: (helm args, kubectl args)."""
    readme = (CHART / "README.md").read_text()
    line = "helm show crds charts/appinfra | kubectl apply --server-side --force-conflicts -f -"
    assert (
        line in readme
        and line.replace("charts/appinfra", "CHART")
        in (CHART / "templates" / "NOTES.txt").read_text()
    )
    show, apply_ = line.split(" | ")
    return [*show.split()[1:-1], str(chart)], apply_.split()[1:]


def _next_chart(tmp: Path) -> Path:
    """This chart as its next version, whose ServiceProfile CRD gains a field."""
    chart = tmp / "appinfra"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    (chart / "Chart.yaml").write_text(yaml.safe_dump({**meta, "version": "0.1.1"}))
    path = chart / "crds" / "serviceprofiles.appinfra.dev.yaml"
    crd = yaml.safe_load(path.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"][NEW_FIELD] = {"type": "string", "description": "added in 0.1.1"}
    path.write_text(yaml.safe_dump(crd))
    return chart


def _kept_on_an_object(cluster: Cluster, namespace: str) -> bool:
    """Whether the API server keeps the field on a ServiceProfile (unknown fields are pruned)."""
    manifest = json.dumps(_profile(namespace, "probe", **{NEW_FIELD: "yes"}))
    # --validate=ignore: an unknown field is then pruned silently instead of refused.
    proc = cluster.kubectl(
        "create", "--dry-run=server", "--validate=ignore", "-o", "json", "-f", "-", input=manifest
    )
    created = json.loads(proc.stdout)
    return created["spec"].get(NEW_FIELD) == "yes"


def _in_the_crd(cluster: Cluster) -> bool:
    crd = cluster.kubectl_json("get", "crd/serviceprofiles.appinfra.dev")
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return NEW_FIELD in spec["properties"]


@pytest.fixture
def upgradable(cluster: Cluster, helm_home: Path) -> Iterator[Release]:
    yield from _install(cluster, helm_home, {"rbac": {"aggregateClusterRoles": False}}, [])


def test_the_documented_command_upgrades_the_crds(
    upgradable: Release, cluster: Cluster, helm_home: Path, tmp_path: Path
) -> None:
    """`helm upgrade` alone leaves the CRDs as they were (Helm never upgrades crds/); the
    README's command, run before it, makes the new field appear in the API server."""
    release, kubeconfig = upgradable, ["--kubeconfig", str(cluster.kubeconfig)]
    namespace = release.namespace
    assert not _in_the_crd(cluster) and not _kept_on_an_object(cluster, namespace)
    chart = _next_chart(tmp_path)
    upgrade = ["upgrade", release.name, str(chart), "-n", namespace, *kubeconfig,
               "--reuse-values", "--timeout", "2m"]  # fmt: skip
    helm(*upgrade, home=helm_home)
    assert not _in_the_crd(cluster), "helm upgrade changed the CRDs by itself"
    show, apply_ = _upgrade_command(chart)
    try:
        cluster.kubectl(*apply_, input=helm(*show, home=helm_home).stdout)
        helm(*upgrade, home=helm_home)
        assert _in_the_crd(cluster)
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                        "crd/serviceprofiles.appinfra.dev")  # fmt: skip
        wait_until(lambda: _kept_on_an_object(cluster, namespace), 30, "the new field served")
        status = helm("status", release.name, "-n", namespace, *kubeconfig, home=helm_home)
        assert "REVISION: 3" in status.stdout and "STATUS: deployed" in status.stdout
    finally:
        # Back to this chart's CRDs for the rest of the session, with the same command.
        show, apply_ = _upgrade_command(CHART)
        cluster.kubectl(*apply_, input=helm(*show, home=helm_home).stdout)
    wait_until(lambda: not _in_the_crd(cluster), 30, "the CRDs restored")


# --- Events -------------------------------------------------------------------------------------


@pytest.fixture
def frozen_configmaps(crds: Cluster, namespace: str) -> Iterator[str]:
    """appinfra's ConfigMaps in `namespace` refused (403) by an admission policy."""
    with frozen(crds, namespace, "configmaps", "ConfigMap",
                {"app.kubernetes.io/managed-by": "appinfra"}):  # fmt: skip
        yield namespace


def test_a_repeated_failure_is_one_event_whose_count_grows(
    crds: Cluster, frozen_configmaps: str, tmp_path: Path
) -> None:
    """An operator with exactly the chart's RBAC and the POD_NAME the chart sets, whose
    writes keep failing the same way: one Event from it, counted, not one per retry."""
    namespace, pod = frozen_configmaps, f"appinfra-{uuid.uuid4().hex[:5]}-x2k9d"
    account = f"appinfra-events-{namespace}"
    kubeconfig = service_account_kubeconfig(
        crds, namespace, account, chart_rules(), tmp_path / "kubeconfig"
    )
    (tmp_path / "operator-config.yaml").write_text(yaml.safe_dump({"secretStores": {}}))
    op = Operator(crds, tmp_path, account, "--namespace", namespace)
    op.process.argv.remove("--all-namespaces")
    op.process.env.update({"KUBECONFIG": str(kubeconfig), "POD_NAME": pod,
                           "APPINFRA_BACKOFF_BASE_SECONDS": "1"})  # fmt: skip
    op.start()
    try:
        apply(crds, deployment(namespace, "web"), _profile(namespace, "web"))

        def ours() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = crds.kubectl_json(
                "-n", namespace, "get", "events",
                "--field-selector", "involvedObject.name=web,reason=ApplyFailed",
            )["items"]  # fmt: skip
            # A session operator, if one runs, posts its own series: only this pod's count.
            return [e for e in items if e.get("reportingInstance") == pod]

        wait_until(lambda: any(e.get("count", 0) >= 3 for e in ours()), 90,
                   "the ApplyFailed Event counted three times")  # fmt: skip
        (event,) = ours()
        assert event["involvedObject"]["kind"] == "ServiceProfile"
        assert "frozen" in event["message"] and event["type"] == "Warning"
        assert event["reportingComponent"] == "appinfra.dev/operator"
        assert event["lastTimestamp"] >= event["firstTimestamp"]
        assert "could not count Event" not in op.process.log_path.read_text()
    finally:
        op.stop()
