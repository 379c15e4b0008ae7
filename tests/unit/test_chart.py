"""The Helm chart: lint, Kubernetes 1.37 schema validity, least-privilege RBAC, the roles
aggregated for users, hardening and security contexts, the NetworkPolicy, the `helm test`
Pod, the values schema, and CRDs identical to the generated ones.

Needs bin/helm (`hack/build-helm.sh`, `make helm`); without it every test here fails
with that instruction rather than skipping, so a missing helm cannot look green.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from appinfra.api.operatorconfig import OperatorConfig, load_config
from appinfra.cli import build_parser
from tests.support.rbac import aggregated

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "appinfra"
HELM = REPO / "bin" / "helm"
KUBE_VERSION = "1.37.2"
RELEASE, NAMESPACE = "appinfra", "appinfra-system"

Rule = tuple[str, str, str]  # (apiGroup, resource, verb)


def _rules(*specs: tuple[str, str, str]) -> frozenset[Rule]:
    """Expand ("group", "res1 res2", "verb1 verb2") specs into (group, resource, verb)."""
    return frozenset(
        (group, resource, verb)
        for group, resources, verbs in specs
        for resource in resources.split()
        for verb in verbs.split()
    )


KINDS = "serviceprofiles secretbindings healthpolicies ratelimitpolicies"
CHILD_VERBS = "get list watch create patch delete"
# What the operator does in each namespace it watches (see the chart's README).
NAMESPACED_RULES = _rules(
    ("appinfra.dev", KINDS, "get list watch patch"),
    ("appinfra.dev", " ".join(f"{k}/status" for k in KINDS.split()), "patch"),
    # blockOwnerDeletion under OwnerReferencesPermissionEnforcement
    ("appinfra.dev", " ".join(f"{k}/finalizers" for k in KINDS.split()), "update"),
    ("apps", "deployments", "get list watch patch"),
    ("", "configmaps secrets", CHILD_VERBS),
    ("autoscaling", "horizontalpodautoscalers", CHILD_VERBS),
    ("networking.k8s.io", "networkpolicies", CHILD_VERBS),
    ("policy", "poddisruptionbudgets", CHILD_VERBS),
    ("monitoring.coreos.com", "servicemonitors podmonitors prometheusrules", CHILD_VERBS),
    ("", "services", "get list"),  # ServiceProfile monitoring: the ServiceMonitor's Service
    ("networking.k8s.io", "ingresses", "list watch patch"),
    ("", "events", "create patch"),  # patch: a repeated Event is counted in the first
)
# Only with a kubernetes-auth store, and then limited by resourceNames (checked below).
TOKEN_RULES = _rules(("", "serviceaccounts/token", "create"))
# Cluster-scoped reads kopf needs in every mode.
CLUSTER_SCOPED_RULES = _rules(
    ("apiextensions.k8s.io", "customresourcedefinitions", "list watch"),
    ("", "namespaces", "list watch"),
)
LEASE_RULES = _rules(("coordination.k8s.io", "leases", "get create update"))

NAMESPACED_VALUES: dict[str, Any] = {
    "watchNamespaces": ["shop", "team-a"],
    "secretStores": {
        "vault-token": {
            "vault": {
                "address": "https://vault:8200",
                "auth": {"token": {"secretRef": {"namespace": "ops", "name": "vt", "key": "t"}}},
            },
            "allowedNamespaces": ["shop"],
        },
        "aws-static": {
            "aws": {
                "service": "SecretsManager",
                "region": "eu-west-1",
                "auth": {
                    "secretRef": {
                        "namespace": "shop",
                        "name": "aws-creds",
                        "accessKeyIDKey": "id",
                        "secretAccessKeyKey": "secret",
                    }
                },
            },
            "allowedNamespaces": ["shop"],
        },
    },
}
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "watch-namespaces": NAMESPACED_VALUES,
    "service-monitor": {"serviceMonitor": {"enabled": True, "scrapeTimeout": "10s"}},
    "network-policy": {
        "networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["10.0.0.1/32"]}},
        **NAMESPACED_VALUES,
    },
    "cert-manager": {"webhook": {"certManager": {"enabled": True}}},
    "monitoring": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "prom"},
            "alertLabels": {"team": "platform"},
            "notReadyFor": "30m",
        },
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Platform"}},
    },
    "example-config": yaml.safe_load(
        (REPO / "examples" / "operator-config" / "config.yaml").read_text()
    ),
}
# Kinds that are not built into Kubernetes, so no 1.37 schema exists for them.
NOT_BUILT_IN = {
    "ServiceMonitor": "monitoring.coreos.com/v1 is the Prometheus Operator's CRD",
    "PrometheusRule": "monitoring.coreos.com/v1 is the Prometheus Operator's CRD",
    "Certificate": "cert-manager.io/v1 is cert-manager's CRD",
    "Issuer": "cert-manager.io/v1 is cert-manager's CRD",
}


def helm_env(home: Path) -> dict[str, str]:
    """Helm with its config, cache and data under `home`: nothing read from or written to ~."""
    return {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }


def helm(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run bin/helm; fail (not skip) with the fix when it has not been built."""
    if not HELM.exists():
        pytest.fail(f"{HELM} is missing: build it with `hack/build-helm.sh` (or `make helm`)")
    proc = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, env=helm_env(home), timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm")


def values_file(home: Path, values: dict[str, Any]) -> Path:
    path = home / f"values-{abs(hash(json.dumps(values, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@cache
def _render(home: Path, values_json: str, include_crds: bool) -> tuple[dict[str, Any], ...]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    args += ["--kube-version", KUBE_VERSION, "-f", str(values_file(home, json.loads(values_json)))]
    if include_crds:
        args.append("--include-crds")
    out = helm(*args, home=home).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def render(home: Path, values: dict[str, Any], include_crds: bool = False) -> list[dict[str, Any]]:
    return list(_render(home, json.dumps(values, sort_keys=True), include_crds))


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def rule_set(role: dict[str, Any]) -> frozenset[Rule]:
    return frozenset(
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    )


def operator_cluster_role(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator's ClusterRole (`<release>-<namespace>`), not the aggregated user roles."""
    return only(docs, "ClusterRole", f"{RELEASE}-{NAMESPACE}")


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (operator,) = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = operator
    return result


# --- lint and Kubernetes schemas -----------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict_is_clean(helm_home: Path, scenario: str) -> None:
    proc = helm(
        "lint", "--strict", str(CHART), "-f", str(values_file(helm_home, SCENARIOS[scenario])),
        home=helm_home, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def _validation_errors(doc: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{doc['kind']}/{doc['metadata']['name']}: {error.message} at {list(error.path)}"
    return None


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_manifests_validate_against_kubernetes_schemas(
    helm_home: Path, scenario: str
) -> None:
    docs = render(helm_home, SCENARIOS[scenario], include_crds=True)
    checked = [doc for doc in docs if doc["kind"] not in NOT_BUILT_IN]
    assert {d["kind"] for d in checked} >= {"Deployment", "CustomResourceDefinition", "ConfigMap"}
    errors = [error for doc in checked if (error := _validation_errors(doc))]
    assert errors == []


def test_service_monitor_is_the_only_unchecked_kind(helm_home: Path) -> None:
    skipped = {d["kind"] for d in render(helm_home, SCENARIOS["service-monitor"])} & set(
        NOT_BUILT_IN
    )
    assert skipped == {"ServiceMonitor"}
    assert not any(d["kind"] == "ServiceMonitor" for d in render(helm_home, {}))


def test_the_schema_validation_rejects_a_bad_manifest(helm_home: Path) -> None:
    """The check above can fail: strict mode rejects an unknown field and a wrong type."""
    deployment = only(render(helm_home, {}), "Deployment")
    typo = json.loads(json.dumps(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    wrong_type = json.loads(json.dumps(deployment))
    wrong_type["spec"]["replicas"] = "two"
    assert _validation_errors(typo) and _validation_errors(wrong_type)


# --- RBAC --------------------------------------------------------------------------------------


def _roles(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (d for d in docs if d["kind"] in ("Role", "ClusterRole"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rbac_has_no_wildcards(helm_home: Path, scenario: str) -> None:
    for role in _roles(render(helm_home, SCENARIOS[scenario])):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in item for item in rule.get(field, [])), (role, rule)


def test_cluster_wide_rbac_is_exactly_what_the_operator_needs(helm_home: Path) -> None:
    docs = render(helm_home, {})
    assert rule_set(operator_cluster_role(docs)) == NAMESPACED_RULES | CLUSTER_SCOPED_RULES
    assert rule_set(only(docs, "Role")) == LEASE_RULES
    assert only(docs, "Role")["metadata"]["namespace"] == NAMESPACE


def test_namespaced_rbac_stays_in_the_watched_namespaces(helm_home: Path) -> None:
    docs = render(helm_home, NAMESPACED_VALUES)
    assert rule_set(operator_cluster_role(docs)) == CLUSTER_SCOPED_RULES
    roles = {
        (role["metadata"]["namespace"], role["metadata"]["name"]): role
        for role in _roles(docs)
        if role["kind"] == "Role"
    }
    for ns in NAMESPACED_VALUES["watchNamespaces"]:
        assert rule_set(roles[(ns, RELEASE)]) == NAMESPACED_RULES
    assert rule_set(roles[(NAMESPACE, f"{RELEASE}-leader-election")]) == LEASE_RULES
    # The token store's credential Secret is outside the watched namespaces: `get` on it only.
    # (aws-creds is in the watched namespace shop, already readable there.)
    assert roles[("ops", f"{RELEASE}-credentials")]["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["vt"], "verbs": ["get"]}
    ]
    assert set(roles) == {
        ("shop", RELEASE), ("team-a", RELEASE), ("ops", f"{RELEASE}-credentials"),
        (NAMESPACE, f"{RELEASE}-leader-election"),
    }  # fmt: skip


def _kubernetes_store(service_account: str | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = {"role": "appinfra"}
    if service_account is not None:
        auth["serviceAccount"] = service_account
    return {
        "vault": {"address": "https://vault:8200", "auth": {"kubernetes": auth}},
        "allowedNamespaces": ["shop"],
    }


TOKEN_STORES: dict[str, Any] = {
    "k8s-default": _kubernetes_store(),
    "k8s-payments": _kubernetes_store("payments"),
    "k8s-payments-again": _kubernetes_store("payments"),
    "k8s-explicit-default": _kubernetes_store("default"),
    **NAMESPACED_VALUES["secretStores"],  # token and aws stores: no TokenRequest
}
TOKEN_RULE = {
    "apiGroups": [""],
    "resources": ["serviceaccounts/token"],
    "resourceNames": ["default", "payments"],
    "verbs": ["create"],
}


@pytest.mark.parametrize("scenario", ["defaults", "watch-namespaces", "service-monitor"])
def test_no_token_request_without_a_kubernetes_auth_store(helm_home: Path, scenario: str) -> None:
    for role in _roles(render(helm_home, SCENARIOS[scenario])):
        assert not rule_set(role) & TOKEN_RULES, role["metadata"]


def test_token_request_only_for_the_stores_service_accounts(helm_home: Path) -> None:
    docs = render(helm_home, {"secretStores": TOKEN_STORES})
    cluster_role = operator_cluster_role(docs)
    assert rule_set(cluster_role) == NAMESPACED_RULES | CLUSTER_SCOPED_RULES | TOKEN_RULES
    assert [r for r in cluster_role["rules"] if "serviceaccounts/token" in r["resources"]] == [
        TOKEN_RULE
    ]
    # Namespaced mode: the same limited rule in each watched namespace's Role only.
    namespaced = render(helm_home, {**NAMESPACED_VALUES, "secretStores": TOKEN_STORES})
    for role in _roles(namespaced):
        tokens = [r for r in role["rules"] if "serviceaccounts/token" in r["resources"]]
        watched = role["kind"] == "Role" and role["metadata"]["name"] == RELEASE
        assert tokens == ([TOKEN_RULE] if watched else []), role["metadata"]


def test_token_audience_defaults_to_vault_in_the_rendered_config(helm_home: Path) -> None:
    docs = render(helm_home, {"secretStores": {"k8s": _kubernetes_store()}})
    config = load_config(only(docs, "ConfigMap")["data"]["config.yaml"])
    auth = config.secret_stores["k8s"].vault.auth.kubernetes  # type: ignore[union-attr]
    assert auth is not None and auth.audience == "vault"


def test_owner_finalizers_update_is_granted_for_every_kind_with_children(helm_home: Path) -> None:
    for values in ({}, NAMESPACED_VALUES):
        granted = frozenset().union(
            *(rule_set(r) for r in _roles(render(helm_home, values)) if r["kind"] != "ClusterRole")
        ) | rule_set(operator_cluster_role(render(helm_home, values)))
        for kind in KINDS.split():  # HealthPolicies own their alerts' PrometheusRule
            assert ("appinfra.dev", f"{kind}/finalizers", "update") in granted, kind


@pytest.mark.parametrize("scenario", ["defaults", "watch-namespaces"])
def test_every_role_is_bound_to_the_chart_service_account(helm_home: Path, scenario: str) -> None:
    docs = render(helm_home, SCENARIOS[scenario])
    sa = only(docs, "ServiceAccount")["metadata"]
    roles = {
        (r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"])
        for r in _roles(docs)
        if not aggregated(r)  # for users, through the built-in roles: bound to nobody here
    }
    bound = set()
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}
        ]
        ref = binding["roleRef"]
        bound.add((ref["kind"], binding["metadata"].get("namespace"), ref["name"]))
    assert bound == roles


# --- the Deployment ----------------------------------------------------------------------------


def test_deployment_is_hardened(helm_home: Path) -> None:
    docs = render(helm_home, {})
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container(docs)["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert isinstance(ctx["runAsUser"], int) and ctx["runAsUser"] > 0
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    resources = container(docs)["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"} and "memory" in resources["limits"]


def test_deployment_runs_the_operator_as_documented(helm_home: Path) -> None:
    docs = render(helm_home, {})
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    op = container(docs)
    assert op["args"] == [
        "run", "--config=/etc/appinfra/config.yaml", "--metrics-port=8081",
        "--health-port=8080", "--log-format=json", "--leader-elect",
        f"--lease-name={RELEASE}", "--all-namespaces",
        "--webhook-port=9443", "--webhook-cert-dir=/etc/appinfra-webhook",
    ]  # fmt: skip
    env = {e["name"]: e for e in op["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    ports = {p["name"]: p["containerPort"] for p in op["ports"]}
    assert ports == {"health": 8080, "metrics": 8081, "webhook": 9443}
    for probe in ("livenessProbe", "readinessProbe"):
        assert op[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    mounts = {m["mountPath"]: m["name"] for m in op["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    config_map = only(docs, "ConfigMap")["metadata"]["name"]
    assert volumes[mounts["/etc/appinfra"]]["configMap"]["name"] == config_map
    account = only(docs, "ServiceAccount")["metadata"]["name"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account


def test_watch_namespaces_and_log_format_become_flags(helm_home: Path) -> None:
    docs = render(helm_home, {**NAMESPACED_VALUES, "logFormat": "text", "verbose": True})
    args = container(docs)["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=shop", "--namespace=team-a",
    ]  # fmt: skip
    assert "--all-namespaces" not in args
    assert "--log-format=text" in args and "--verbose" in args


@pytest.mark.parametrize("scenario", ["defaults", "watch-namespaces"])
def test_deployment_args_parse_with_the_real_command_line(helm_home: Path, scenario: str) -> None:
    values = {**SCENARIOS[scenario], "verbose": True}
    args = build_parser().parse_args(container(render(helm_home, values))["args"])
    assert args.command == "run" and args.config == "/etc/appinfra/config.yaml"
    assert args.namespace == values.get("watchNamespaces", [])
    assert args.all_namespaces is not bool(args.namespace)
    assert (args.metrics_port, args.health_port, args.log_format) == (8081, 8080, "json")
    assert args.leader_elect and args.lease_name == RELEASE and args.verbose


def test_metrics_service_selects_the_operator_pods(helm_home: Path) -> None:
    docs = render(helm_home, {})
    service = only(docs, "Service", f"{RELEASE}-metrics")
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"},
        {"name": "health", "port": 8080, "targetPort": "health", "protocol": "TCP"},
    ]


@pytest.mark.parametrize(("replicas", "pdb"), [(1, False), (2, True), (3, True)])
def test_pdb_only_with_more_than_one_replica(helm_home: Path, replicas: int, pdb: bool) -> None:
    docs = render(helm_home, {"replicas": replicas})
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert len(budgets) == int(pdb)
    if pdb:
        assert budgets[0]["spec"]["minAvailable"] == 1


# --- roles aggregated for users ------------------------------------------------------------------

AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def test_users_get_the_four_kinds_through_the_built_in_roles(helm_home: Path) -> None:
    docs = render(helm_home, {})
    view = only(docs, "ClusterRole", f"{RELEASE}-{NAMESPACE}-view")
    edit = only(docs, "ClusterRole", f"{RELEASE}-{NAMESPACE}-edit")
    labels = {name: {k for k, v in r["metadata"]["labels"].items() if k.startswith(AGGREGATE)
                     and v == "true"} for name, r in (("view", view), ("edit", edit))}  # fmt: skip
    # As Kubernetes' own roles: edit and admin include what view may do.
    assert labels == {
        "view": {f"{AGGREGATE}view", f"{AGGREGATE}edit", f"{AGGREGATE}admin"},
        "edit": {f"{AGGREGATE}edit", f"{AGGREGATE}admin"},
    }
    assert rule_set(view) == _rules(("appinfra.dev", KINDS, "get list watch"))
    assert rule_set(edit) == _rules(
        ("appinfra.dev", KINDS, "create update patch delete deletecollection")
    )
    # Status is the operator's: no user role writes it; nobody is bound to these roles.
    assert not any("/" in res for _, res, _ in rule_set(view) | rule_set(edit))
    bound = {d["roleRef"]["name"] for d in docs if d["kind"].endswith("Binding")}
    assert not bound & {view["metadata"]["name"], edit["metadata"]["name"]}


def test_aggregated_roles_can_be_turned_off(helm_home: Path) -> None:
    docs = render(helm_home, {"rbac": {"aggregateClusterRoles": False}})
    assert [r["metadata"]["name"] for r in _roles(docs) if aggregated(r)] == []
    assert [r["metadata"]["name"] for r in _roles(docs) if r["kind"] == "ClusterRole"] == [
        f"{RELEASE}-{NAMESPACE}"
    ]


# --- security contexts ---------------------------------------------------------------------------


def _test_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return only(docs, "Pod", f"{RELEASE}-test-health")


def test_security_contexts_are_values_for_the_operator_and_the_test_pod(helm_home: Path) -> None:
    values: dict[str, Any] = {
        "podSecurityContext": {"runAsUser": 1001, "runAsGroup": 1001, "fsGroup": 2000,
                               "runAsNonRoot": True, "supplementalGroups": [3000]},
        "securityContext": {"runAsUser": 1001, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                            "appArmorProfile": {"type": "RuntimeDefault"}},
    }  # fmt: skip
    docs = render(helm_home, values)
    pod_specs = [only(docs, "Deployment")["spec"]["template"]["spec"], _test_pod(docs)["spec"]]
    for spec in pod_specs:
        # Helm merges values: what is set replaces the default, the other defaults stay.
        assert spec["securityContext"] == {
            **values["podSecurityContext"],
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        (one,) = spec["containers"]
        assert values["securityContext"].items() <= one["securityContext"].items()
        assert one["securityContext"]["allowPrivilegeEscalation"] is False
    # null removes a default field.
    unset = render(helm_home, {"securityContext": {"seccompProfile": None}})
    assert "seccompProfile" not in container(unset)["securityContext"]


def test_default_security_contexts_are_the_restricted_profile(helm_home: Path) -> None:
    docs = render(helm_home, {})
    for spec in (only(docs, "Deployment")["spec"]["template"]["spec"], _test_pod(docs)["spec"]):
        assert spec["securityContext"] == {
            "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        }  # fmt: skip
        assert spec["containers"][0]["securityContext"] == {
            "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
            "privileged": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }  # fmt: skip


# --- helm test -----------------------------------------------------------------------------------


def test_helm_test_pod_asks_the_service_for_health_and_metrics(helm_home: Path) -> None:
    docs = render(helm_home, {"image": {"repository": "registry.example/appinfra", "tag": "9"}})
    pod = _test_pod(docs)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # Kept when it fails, so `kubectl logs` shows why.
    policy = pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(",")
    assert "hook-failed" not in policy and "hook-succeeded" in policy
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    (check,) = pod["spec"]["containers"]
    assert check["image"] == container(docs)["image"] == "registry.example/appinfra:9"
    assert check["command"][0] == "python"
    compile(check["args"][0], "helm-test", "exec")  # the script is valid Python
    service = only(docs, "Service", f"{RELEASE}-metrics")
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    host = f"{service['metadata']['name']}.{NAMESPACE}.svc"
    env = {e["name"]: e["value"] for e in check["env"]}
    assert env == {
        "HEALTH_URL": f"http://{host}:{ports['health']}/healthz",
        "METRICS_URL": f"http://{host}:{ports['metrics']}/metrics",
    }
    # The Service's ports reach the container ports the operator serves these on.
    named = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(named)


# --- NetworkPolicy -------------------------------------------------------------------------------


def test_no_network_policy_by_default(helm_home: Path) -> None:
    assert not [d for d in render(helm_home, {}) if d["kind"] == "NetworkPolicy"]


def _egress_ports(rule: dict[str, Any]) -> set[tuple[str, int | str]]:
    return {(p["protocol"], p["port"]) for p in rule["ports"]}


def test_network_policy_allows_exactly_the_operators_traffic(helm_home: Path) -> None:
    docs = render(helm_home, SCENARIOS["network-policy"])
    policy = only(docs, "NetworkPolicy")["spec"]
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    ingress, webhook = policy["ingress"]
    assert _egress_ports(ingress) == {("TCP", "health"), ("TCP", "metrics")}
    assert "from" not in ingress  # no ingressFrom: any source, on these two ports only
    # The API server calls the webhook; a NetworkPolicy cannot name it, so from anywhere.
    assert webhook == {"ports": [{"port": "webhook", "protocol": "TCP"}]}
    off = {**SCENARIOS["network-policy"], "webhook": {"enabled": False}}
    assert len(only(render(helm_home, off), "NetworkPolicy")["spec"]["ingress"]) == 1
    api, dns, stores = policy["egress"]
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert _egress_ports(api) == {("TCP", 443), ("TCP", 6443)}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert _egress_ports(dns) == {("UDP", 53), ("TCP", 53)}
    # NAMESPACED_VALUES: a Vault at https://vault:8200 and AWS without endpoint (443).
    assert _egress_ports(stores) == {("TCP", 8200), ("TCP", 443)} and "to" not in stores


def test_network_policy_store_ports_follow_the_addresses(helm_home: Path) -> None:
    stores = {
        "plain": {"vault": {"address": "http://bao.local", "auth": {"kubernetes": {"role": "r"}}}},
        "moto": {"aws": {"service": "ParameterStore", "region": "eu-west-1",
                         "endpoint": "http://moto:5000"}},
    }  # fmt: skip
    values: dict[str, Any] = {
        "secretStores": stores,
        "networkPolicy": {
            "enabled": True, "dns": False, "apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [6443]},
            "storeEgressTo": [{"namespaceSelector": {"matchLabels": {"name": "vault"}}}],
            "ingressFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            "extraEgress": [{"ports": [{"port": 9999, "protocol": "TCP"}]}],
        },
    }  # fmt: skip
    policy = only(render(helm_home, values), "NetworkPolicy")["spec"]
    api, stores_rule, extra = policy["egress"]  # no DNS rule
    assert _egress_ports(api) == {("TCP", 6443)}
    assert _egress_ports(stores_rule) == {("TCP", 80), ("TCP", 5000)}
    assert stores_rule["to"] == values["networkPolicy"]["storeEgressTo"]
    assert extra == values["networkPolicy"]["extraEgress"][0]
    sources = policy["ingress"][0]["from"]
    assert sources[0] == values["networkPolicy"]["ingressFrom"][0]
    test_labels = _test_pod(render(helm_home, values))["metadata"]["labels"]
    assert sources[1]["podSelector"]["matchLabels"].items() <= test_labels.items()


def test_network_policy_without_api_server_cidrs_says_what_to_set(helm_home: Path) -> None:
    path = str(values_file(helm_home, {"networkPolicy": {"enabled": True}}))
    proc = helm("template", RELEASE, str(CHART), "-f", path, home=helm_home, check=False)
    assert proc.returncode != 0
    assert "networkPolicy.apiServer.cidrs is required" in proc.stderr
    assert "kubectl get endpointslices" in proc.stderr


# --- the configuration file --------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_config_map_is_a_valid_operator_config(helm_home: Path, scenario: str) -> None:
    values = SCENARIOS[scenario]
    config_map = only(render(helm_home, values), "ConfigMap", f"{RELEASE}-config")
    config = load_config(config_map["data"]["config.yaml"])
    expected = {k: values[k] for k in ("secretStores", "rateLimit") if k in values}
    assert config == OperatorConfig.model_validate(expected)


# --- values.schema.json ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicas": "two"}, "/replicas"),
        ({"replicas": 0}, "/replicas"),
        ({"imagee": {"tag": "x"}}, "'imagee' not allowed"),
        ({"securityContext": {"runAsUser": 0}}, "/securityContext/runAsUser"),
        ({"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
        ({"securityContext": {"readOnlyRootFileSystem": True}}, "'readOnlyRootFileSystem'"),
        ({"rbac": {"aggregateClusterRoles": "yes"}}, "/rbac/aggregateClusterRoles"),
        ({"networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1"]}}}, "/networkPolicy/apiServer"),
        ({"logFormat": "xml"}, "/logFormat"),
        ({"watchNamespaces": ["Shop"]}, "/watchNamespaces/0"),
        ({"rateLimit": {"defaultEnforcement": "Nginx"}}, "/rateLimit/defaultEnforcement"),
        ({"prometheusRule": {"notReadyFor": "15 minutes"}}, "/prometheusRule/notReadyFor"),
        ({"prometheusRule": {"selector": '{job="x"}'}}, "/prometheusRule/selector"),
        ({"prometheusRule": {"alertLabels": {"severity": "info"}}}, "propertyName 'severity'"),
        ({"grafanaDashboard": {"labelKey": "a key"}}, "/grafanaDashboard/labelKey"),
        ({"secretStores": {"s": {"allowedNamespaces": ["a"]}}}, "/secretStores/s"),
        (
            {"secretStores": {"s": {"vault": {"address": "https://v", "auth": {}}}}},
            "/secretStores/s/vault/auth",
        ),
        (
            {"secretStores": {"s": {"aws": {"service": "SecretsManager", "regoin": "x"}}}},
            "/secretStores/s/aws",
        ),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else None,
)
def test_values_schema_rejects_bad_values(
    helm_home: Path, values: dict[str, Any], complaint: str
) -> None:
    path = str(values_file(helm_home, values))
    lint = helm("lint", "--strict", str(CHART), "-f", path, home=helm_home, check=False)
    template = helm("template", RELEASE, str(CHART), "-f", path, home=helm_home, check=False)
    for proc in (lint, template):
        assert proc.returncode != 0
        assert "don't meet the specifications of the schema" in proc.stdout + proc.stderr
        assert complaint in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def _shape(node: dict[str, Any], defs: dict[str, Any]) -> Any:
    """What a JSON schema node accepts, without documentation: refs and `X | None` resolved."""
    if "$ref" in node:
        return _shape(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        return _shape(options[0], defs) if len(options) == 1 else [_shape(o, defs) for o in options]
    keep = ("type", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum", "required")
    shape: dict[str, Any] = {k: node[k] for k in keep if k in node}
    if "properties" in node:
        shape["properties"] = {k: _shape(v, defs) for k, v in node["properties"].items()}
    if isinstance(node.get("additionalProperties"), dict):
        shape["additionalProperties"] = _shape(node["additionalProperties"], defs)
    for pattern, sub in node.get("patternProperties", {}).items():
        shape["additionalProperties"] = _shape(sub, defs)
        shape["propertyNames"] = pattern
    if "propertyNames" in node and "pattern" in node["propertyNames"]:
        shape["propertyNames"] = node["propertyNames"]["pattern"]
    return shape


def test_values_schema_matches_the_operator_config_model() -> None:
    """secretStores and rateLimit in values.schema.json accept what the operator accepts."""
    model = OperatorConfig.model_json_schema(by_alias=True)
    chart = _schema()
    for key in ("secretStores", "rateLimit"):
        assert _shape(chart["properties"][key], {}) == _shape(
            model["properties"][key], model["$defs"]
        ), f"values.schema.json {key} has drifted from appinfra.api.operatorconfig"


def value_paths(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every documented value: (dotted path, schema node); map entries appear as `<name>`."""
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        yield path, sub
        yield from value_paths(sub, f"{path}.")
    if isinstance(node.get("additionalProperties"), dict) and "properties" in node.get(
        "additionalProperties", {}
    ):
        yield from value_paths(node["additionalProperties"], f"{prefix}<name>.")


def test_values_schema_is_strict_and_documents_every_value() -> None:
    schema = _schema()
    undocumented = [path for path, node in value_paths(schema) if not node.get("description")]
    assert undocumented == []
    open_objects = [
        path
        for path, node in value_paths(schema)
        if "properties" in node and node.get("additionalProperties") is not False
    ]
    assert open_objects == []


def _leaves(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        if isinstance(value, dict) and value and key not in ("secretStores",):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_every_value_is_in_the_schema_and_the_readme_table() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = dict(value_paths(_schema()))
    assert [leaf for leaf in _leaves(values) if leaf not in documented] == []
    # One table row per value: leaves, plus every field of a secret store entry.
    rows = [p for p, node in documented.items() if "<name>" in p or "properties" not in node]
    readme = (CHART / "README.md").read_text()
    missing = [path for path in rows if f"| `{path}` |" not in readme]
    assert missing == [], "add these to the values table in charts/appinfra/README.md"


# --- CRDs and versions -------------------------------------------------------------------------


def test_chart_crds_are_identical_to_the_generated_ones() -> None:
    generated = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir()}
    assert shipped.keys() == generated.keys(), "copy crds/*.yaml to charts/appinfra/crds/"
    stale = [name for name in generated if shipped[name] != generated[name]]
    assert stale == [], (
        "charts/appinfra/crds/ differs from crds/: cp crds/*.yaml charts/appinfra/crds/"
    )


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = (REPO / "pyproject.toml").read_text()
    assert f'version = "{chart["appVersion"]}"' in project


# --- the admission webhook ------------------------------------------------------------------

WEBHOOK = f"{RELEASE}-webhook"
WEBHOOK_TLS = f"{RELEASE}-webhook-tls"


def _webhook(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (hook,) = only(docs, "ValidatingWebhookConfiguration")["webhooks"]
    result: dict[str, Any] = hook
    return result


def _pem(text_b64: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(text_b64))


def test_webhook_is_served_over_a_helm_generated_certificate(helm_home: Path) -> None:
    docs = render(helm_home, {})
    hook = _webhook(docs)
    # A down operator blocks nobody; kube-system and the operator's namespace are never judged.
    assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
    assert hook["namespaceSelector"]["matchExpressions"] == [{
        "key": "kubernetes.io/metadata.name", "operator": "NotIn",
        "values": ["kube-system", NAMESPACE]}]  # fmt: skip
    assert hook["clientConfig"]["service"] == {
        "name": WEBHOOK, "namespace": NAMESPACE, "path": "/validate", "port": 443}  # fmt: skip
    (rule,) = hook["rules"]
    assert rule["resources"] == [
        "secretbindings", "serviceprofiles", "healthpolicies", "ratelimitpolicies"]  # fmt: skip
    assert rule["operations"] == ["CREATE", "UPDATE"]
    service = only(docs, "Service", WEBHOOK)
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    # The Secret's certificate is signed by the CA the API server is given, for the Service.
    secret = only(docs, "Secret", WEBHOOK_TLS)
    ca, cert = _pem(hook["clientConfig"]["caBundle"]), _pem(secret["data"]["tls.crt"])
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{WEBHOOK}.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    assert base64.b64decode(secret["data"]["ca.crt"]) == ca.public_bytes(Encoding.PEM)
    # The operator serves it from the mounted Secret, and restarts when it changes.
    deployment = only(docs, "Deployment")
    pod = deployment["spec"]["template"]
    checksum = hashlib.sha256(base64.b64decode(secret["data"]["tls.crt"])).hexdigest()
    assert pod["metadata"]["annotations"]["checksum/webhook-cert"] == checksum
    args = container(docs)["args"]
    assert "--webhook-port=9443" in args and "--webhook-cert-dir=/etc/appinfra-webhook" in args
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in container(docs)["ports"]
    mount = {"name": "webhook-tls", "mountPath": "/etc/appinfra-webhook", "readOnly": True}
    assert mount in container(docs)["volumeMounts"]
    assert {"name": "webhook-tls", "secret": {"secretName": WEBHOOK_TLS}} in pod["spec"]["volumes"]
    # Rotated: every render (install, upgrade) makes a new CA and certificate.
    again = _webhook(list(_render.__wrapped__(helm_home, "{}", False)))
    assert again["clientConfig"]["caBundle"] != hook["clientConfig"]["caBundle"]


def test_webhook_judges_only_the_watched_namespaces(helm_home: Path) -> None:
    hook = _webhook(render(helm_home, NAMESPACED_VALUES))
    assert hook["namespaceSelector"]["matchExpressions"] == [{
        "key": "kubernetes.io/metadata.name", "operator": "In",
        "values": ["shop", "team-a"]}]  # fmt: skip
    watching_itself = {**NAMESPACED_VALUES, "watchNamespaces": ["shop", NAMESPACE, "kube-system"]}
    hook = _webhook(render(helm_home, watching_itself))
    assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == ["shop"]


def test_webhook_certificate_from_cert_manager(helm_home: Path) -> None:
    docs = render(helm_home, SCENARIOS["cert-manager"])
    vwc = only(docs, "ValidatingWebhookConfiguration")
    assert vwc["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"{NAMESPACE}/{WEBHOOK_TLS}"}  # fmt: skip
    assert "caBundle" not in _webhook(docs)["clientConfig"]
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == WEBHOOK_TLS]
    certificate = only(docs, "Certificate", WEBHOOK_TLS)
    assert certificate["spec"]["secretName"] == WEBHOOK_TLS
    assert certificate["spec"]["issuerRef"] == {"name": f"{WEBHOOK}-selfsigned", "kind": "Issuer"}
    assert only(docs, "Issuer")["spec"] == {"selfSigned": {}}
    assert "checksum/webhook-cert" not in only(docs, "Deployment")["spec"]["template"]["metadata"][
        "annotations"]  # fmt: skip
    issuer = {"name": "corp-ca", "kind": "ClusterIssuer"}
    docs = render(helm_home, {"webhook": {"certManager": {"enabled": True, "issuerRef": issuer}}})
    assert only(docs, "Certificate")["spec"]["issuerRef"] == issuer
    assert not [d for d in docs if d["kind"] == "Issuer"]


def test_webhook_off_leaves_no_trace(helm_home: Path) -> None:
    docs = render(helm_home, {"webhook": {"enabled": False}})
    kinds = {d["kind"] for d in docs}
    assert "ValidatingWebhookConfiguration" not in kinds
    assert not [d for d in docs if "webhook" in d["metadata"]["name"]]
    assert not [a for a in container(docs)["args"] if "webhook" in a]
    assert "webhook-tls" not in json.dumps(only(docs, "Deployment"))
