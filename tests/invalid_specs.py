"""Invalid appinfra resources, each with the field its rejection must name.

Shared by the unit tests (`appinfra validate` must name `path`) and the e2e
tests (`kubectl apply` against a real API server must name `server_path` in
its error). The two differ only where a map is involved: the validator always
writes map keys as path segments (`spec.limits.default.by`), while the API
server does so for schema errors but brackets them for CEL errors
(`spec.limits[default].by`) and names a map, not the key, when a CEL rule on
the map rejects a key. Every case breaks exactly one rule, so the expected
field is unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

API_VERSION = "appinfra.dev/v1alpha1"
DEPLOYMENT = {"kind": "Deployment", "name": "payments"}
INGRESS = {"group": "networking.k8s.io", "kind": "Ingress", "name": "payments"}
PROBE = {"httpGet": {"path": "/healthz", "port": "http"}}
LIMIT = {"requests": 10, "unit": "Second"}
DATA = [{"secretKey": "PASSWORD", "remoteRef": {"key": "shop/payments/db"}}]


@dataclass(frozen=True)
class InvalidSpec:
    """One resource the API server and `appinfra validate` must both reject."""

    id: str
    obj: dict[str, Any]
    path: str
    api_path: str = ""

    @property
    def server_path(self) -> str:
        """The path as the API server prints it."""
        return self.api_path or self.path


def _obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _sp(name: str, **spec: Any) -> dict[str, Any]:
    return _obj("ServiceProfile", name, {"targetRef": DEPLOYMENT, **spec})


def _sb(name: str, **spec: Any) -> dict[str, Any]:
    return _obj("SecretBinding", name, {"store": "vault-main", "data": DATA, **spec})


def _hp(name: str, **spec: Any) -> dict[str, Any]:
    return _obj("HealthPolicy", name, {"targetRef": DEPLOYMENT, **spec})


def _rlp(name: str, **spec: Any) -> dict[str, Any]:
    return _obj("RateLimitPolicy", name, {"targetRef": INGRESS, **spec})


INVALID_SPECS: list[InvalidSpec] = [
    # ServiceProfile
    InvalidSpec(
        "sp-min-above-max",
        _sp("bad-sp-min-above-max", autoscaling={"minReplicas": 5, "maxReplicas": 2}),
        "spec.autoscaling.minReplicas",
    ),
    InvalidSpec(
        "sp-min-replicas-zero",
        _sp("bad-sp-min-replicas-zero", autoscaling={"minReplicas": 0, "maxReplicas": 2}),
        "spec.autoscaling.minReplicas",
    ),
    InvalidSpec(
        "sp-disruption-both",
        _sp("bad-sp-disruption-both", disruption={"minAvailable": 1, "maxUnavailable": 1}),
        "spec.disruption.maxUnavailable",
    ),
    InvalidSpec(
        "sp-disruption-neither",
        _sp("bad-sp-disruption-neither", disruption={}),
        "spec.disruption.minAvailable",
    ),
    InvalidSpec(
        "sp-volume-without-mount-path",
        _sp("bad-sp-volume", config={"data": {"A": "1"}, "inject": "Volume"}),
        "spec.config.mountPath",
    ),
    InvalidSpec(
        "sp-unknown-inject",
        _sp("bad-sp-inject", config={"inject": "Env"}),
        "spec.config.inject",
    ),
    InvalidSpec(
        "sp-bad-max-surge",
        _sp("bad-sp-max-surge", rollout={"maxSurge": "25"}),
        "spec.rollout.maxSurge",
    ),
    InvalidSpec(
        "sp-deadline-not-above-min-ready",
        _sp("bad-sp-deadline", rollout={"minReadySeconds": 60, "progressDeadlineSeconds": 30}),
        "spec.rollout.progressDeadlineSeconds",
    ),
    # ServiceProfile monitoring
    InvalidSpec(
        "sp-monitoring-no-port",
        _sp("bad-sp-mon-no-port", monitoring={"path": "/metrics"}),
        "spec.monitoring.port",
    ),
    InvalidSpec(
        "sp-monitoring-port-zero",
        _sp("bad-sp-mon-port-zero", monitoring={"port": 0}),
        "spec.monitoring.port",
    ),
    InvalidSpec(
        "sp-monitoring-port-name-uppercase",
        _sp("bad-sp-mon-port-name", monitoring={"port": "Metrics"}),
        "spec.monitoring.port",
    ),
    InvalidSpec(
        "sp-monitoring-timeout-above-interval",
        _sp(
            "bad-sp-mon-timeout",
            monitoring={"port": "metrics", "interval": "30s", "scrapeTimeout": "1m"},
        ),
        "spec.monitoring.scrapeTimeout",
    ),
    InvalidSpec(
        "sp-monitoring-interval-zero",
        _sp("bad-sp-mon-interval-zero", monitoring={"port": "metrics", "interval": "0s"}),
        "spec.monitoring.interval",
    ),
    InvalidSpec(
        "sp-monitoring-interval-days",
        _sp("bad-sp-mon-interval-days", monitoring={"port": "metrics", "interval": "1d"}),
        "spec.monitoring.interval",
    ),
    InvalidSpec(
        "sp-monitoring-bad-scheme",
        _sp("bad-sp-mon-scheme", monitoring={"port": "metrics", "scheme": "ftp"}),
        "spec.monitoring.scheme",
    ),
    InvalidSpec(
        "sp-monitoring-service-with-podmonitor",
        _sp(
            "bad-sp-mon-service", monitoring={"port": 8080, "kind": "PodMonitor", "service": "web"}
        ),
        "spec.monitoring.service",
    ),
    InvalidSpec(
        "sp-monitoring-reserved-label",
        _sp(
            "bad-sp-mon-label",
            monitoring={"port": 8080, "labels": {"appinfra.dev/owner-name": "other"}},
        ),
        "spec.monitoring.labels",
    ),
    InvalidSpec(
        "sp-monitoring-bad-label-value",
        _sp("bad-sp-mon-label-value", monitoring={"port": 8080, "labels": {"team": "a b"}}),
        "spec.monitoring.labels.team",
    ),
    InvalidSpec(
        "sp-monitoring-relabeling-without-target",
        _sp("bad-sp-mon-relabel", monitoring={"port": 8080, "relabelings": [{"regex": "x"}]}),
        "spec.monitoring.relabelings[0].targetLabel",
    ),
    InvalidSpec(
        "sp-monitoring-hashmod-without-modulus",
        _sp(
            "bad-sp-mon-hashmod",
            monitoring={
                "port": 8080,
                "metricRelabelings": [
                    {"action": "HashMod", "targetLabel": "shard", "sourceLabels": ["instance"]}
                ],
            },
        ),
        "spec.monitoring.metricRelabelings[0].modulus",
    ),
    InvalidSpec(
        "sp-monitoring-bad-source-label",
        _sp(
            "bad-sp-mon-source",
            monitoring={
                "port": 8080,
                "relabelings": [{"action": "keep", "sourceLabels": ["not-a-label"]}],
            },
        ),
        "spec.monitoring.relabelings[0].sourceLabels[0]",
    ),
    InvalidSpec(
        "sp-monitoring-too-many-relabelings",
        _sp(
            "bad-sp-mon-many",
            monitoring={"port": 8080, "relabelings": [{"action": "keep", "regex": "x"}] * 33},
        ),
        "spec.monitoring.relabelings",
    ),
    InvalidSpec(
        "sp-missing-target-name",
        _obj("ServiceProfile", "bad-sp-target-name", {"targetRef": {"kind": "Deployment"}}),
        "spec.targetRef.name",
    ),
    InvalidSpec(
        "sp-target-kind-statefulset",
        _obj(
            "ServiceProfile",
            "bad-sp-target-kind",
            {"targetRef": {"kind": "StatefulSet", "name": "payments"}},
        ),
        "spec.targetRef.kind",
    ),
    InvalidSpec(
        "sp-unknown-field",
        _sp("bad-sp-unknown-field", autoscale={"maxReplicas": 3}),
        "spec.autoscale",
    ),
    InvalidSpec(
        "sp-bad-config-key",
        _sp("bad-sp-config-key", config={"data": {"bad key": "x"}}),
        "spec.config.data.bad key",
        "spec.config.data",
    ),
    InvalidSpec(
        "sp-bad-variable-name",
        _sp("bad-sp-variable", config={"variables": {"1ST": "x"}}),
        "spec.config.variables.1ST",
        "spec.config.variables",
    ),
    InvalidSpec(
        "sp-missing-spec",
        {
            "apiVersion": API_VERSION,
            "kind": "ServiceProfile",
            "metadata": {"name": "bad-sp-no-spec"},
        },
        "spec",
    ),
    # SecretBinding
    InvalidSpec(
        "sb-bad-duration",
        _sb("bad-sb-duration", refreshInterval="5 minutes"),
        "spec.refreshInterval",
    ),
    InvalidSpec(
        "sb-duration-not-a-string",
        _sb("bad-sb-duration-int", refreshInterval=30),
        "spec.refreshInterval",
    ),
    InvalidSpec(
        "sb-unknown-creation-policy",
        _sb("bad-sb-creation-policy", target={"creationPolicy": "Adopt"}),
        "spec.target.creationPolicy",
    ),
    InvalidSpec(
        "sb-unknown-deletion-policy",
        _sb("bad-sb-deletion-policy", target={"deletionPolicy": "Purge"}),
        "spec.target.deletionPolicy",
    ),
    InvalidSpec(
        "sb-no-data",
        _obj(
            "SecretBinding", "bad-sb-no-data", {"store": "vault-main", "data": [], "dataFrom": []}
        ),
        "spec.data",
    ),
    InvalidSpec(
        "sb-missing-remote-key",
        _sb("bad-sb-remote-key", data=[{"secretKey": "A", "remoteRef": {"property": "p"}}]),
        "spec.data[0].remoteRef.key",
    ),
    InvalidSpec(
        "sb-duplicate-secret-key",
        _sb("bad-sb-duplicate", data=[*DATA, *DATA]),
        "spec.data",
    ),
    InvalidSpec(
        "sb-consumer-not-deployment",
        _sb("bad-sb-consumer", targetRef={"kind": "DaemonSet", "name": "payments"}),
        "spec.targetRef.kind",
    ),
    # HealthPolicy
    InvalidSpec(
        "hp-nothing-set",
        _hp("bad-hp-empty"),
        "spec",
    ),
    InvalidSpec(
        "hp-probe-two-handlers",
        _hp("bad-hp-two-handlers", liveness={**PROBE, "tcpSocket": {"port": "http"}}),
        "spec.liveness",
    ),
    InvalidSpec(
        "hp-probe-no-handler",
        _hp("bad-hp-no-handler", readiness={"periodSeconds": 5}),
        "spec.readiness",
    ),
    InvalidSpec(
        "hp-unknown-mode",
        _hp("bad-hp-mode", mode="Replace", liveness=PROBE),
        "spec.mode",
    ),
    InvalidSpec(
        "hp-sleep-not-below-grace",
        _hp(
            "bad-hp-sleep",
            gracefulShutdown={"preStopSleepSeconds": 30, "terminationGracePeriodSeconds": 30},
        ),
        "spec.gracefulShutdown.preStopSleepSeconds",
    ),
    InvalidSpec(
        "hp-bad-container-name",
        _hp("bad-hp-container", containers=["Main_Container"], liveness=PROBE),
        "spec.containers[0]",
    ),
    InvalidSpec(
        "hp-duplicate-container",
        _hp("bad-hp-duplicate-container", containers=["payments", "payments"], liveness=PROBE),
        "spec.containers",
    ),
    InvalidSpec(
        "hp-alerts-objective-100",
        _hp("bad-hp-objective-100", alerts={"availability": {"objective": "100"}}),
        "spec.alerts.availability.objective",
    ),
    InvalidSpec(
        "hp-alerts-objective-zero",
        _hp("bad-hp-objective-zero", alerts={"latency": {"objective": "0.0", "threshold": "1s"}}),
        "spec.alerts.latency.objective",
    ),
    InvalidSpec(
        "hp-alerts-latency-zero",
        _hp("bad-hp-latency-zero", alerts={"latency": {"objective": "99", "threshold": "0s"}}),
        "spec.alerts.latency.threshold",
    ),
    InvalidSpec(
        "hp-alerts-window-not-a-duration",
        _hp("bad-hp-window", alerts={"window": "30 days"}),
        "spec.alerts.window",
    ),
    InvalidSpec(
        "hp-alerts-errors-and-success",
        _hp(
            "bad-hp-errors-and-success",
            alerts={
                "availability": {
                    "objective": "99",
                    "errors": {"metric": "e_total"},
                    "success": {"metric": "s_total"},
                }
            },
        ),
        "spec.alerts.availability.success",
    ),
    InvalidSpec(
        "hp-alerts-matcher-injection",
        _hp("bad-hp-matcher", alerts={"selector": [{"label": "job", "value": 'x"} or vector(1)'}]}),
        "spec.alerts.selector[0].value",
    ),
    InvalidSpec(
        "hp-alerts-matcher-possessive",
        _hp(
            "bad-hp-matcher-possessive",
            alerts={"selector": [{"label": "job", "op": "=~", "value": "api.*+"}]},
        ),
        "spec.alerts.selector[0].value",
    ),
    InvalidSpec(
        "hp-alerts-matcher-on-namespace",
        _hp("bad-hp-matcher-ns", alerts={"selector": [{"label": "namespace", "value": "other"}]}),
        "spec.alerts.selector[0].label",
    ),
    InvalidSpec(
        "hp-alerts-metric-name",
        _hp(
            "bad-hp-metric",
            alerts={"latency": {"objective": "99", "threshold": "1s", "metric": "up{job=~'.+'}"}},
        ),
        "spec.alerts.latency.metric",
    ),
    InvalidSpec(
        "hp-alerts-reserved-label",
        _hp("bad-hp-reserved-label", alerts={"labels": {"severity": "info"}}),
        "spec.alerts.labels",
    ),
    InvalidSpec(
        "hp-alerts-template-in-label",
        _hp("bad-hp-template-label", alerts={"labels": {"team": "{{ $labels.pod }}"}}),
        "spec.alerts.labels.team",
        "spec.alerts.labels",
    ),
    InvalidSpec(
        "hp-alerts-rule-label-ours",
        _hp("bad-hp-rule-label", alerts={"ruleLabels": {"appinfra.dev/owner-name": "x"}}),
        "spec.alerts.ruleLabels",
    ),
    InvalidSpec(
        "hp-alerts-unknown-alert",
        _hp("bad-hp-unknown-alert", alerts={"disabled": ["Everything"]}),
        "spec.alerts.disabled[0]",
    ),
    # RateLimitPolicy
    InvalidSpec(
        "rlp-bad-unit",
        _rlp("bad-rlp-unit", limits={"default": {"requests": 10, "unit": "Week"}}),
        "spec.limits.default.unit",
    ),
    InvalidSpec(
        "rlp-zero-requests",
        _rlp("bad-rlp-zero", limits={"default": {"requests": 0}}),
        "spec.limits.default.requests",
    ),
    InvalidSpec(
        "rlp-negative-burst",
        _rlp("bad-rlp-burst", limits={"default": {**LIMIT, "burst": -1}}),
        "spec.limits.default.burst",
    ),
    InvalidSpec(
        "rlp-ingress-nginx-on-deployment",
        _obj(
            "RateLimitPolicy",
            "bad-rlp-nginx-deployment",
            {"targetRef": DEPLOYMENT, "enforcement": "IngressNginx", "limits": {"default": LIMIT}},
        ),
        "spec.enforcement",
    ),
    InvalidSpec(
        "rlp-unknown-enforcement",
        _rlp("bad-rlp-enforcement", enforcement="Istio", limits={"default": LIMIT}),
        "spec.enforcement",
    ),
    InvalidSpec(
        "rlp-service-in-apps-group",
        _obj(
            "RateLimitPolicy",
            "bad-rlp-service-group",
            {
                "targetRef": {"group": "apps", "kind": "Service", "name": "payments"},
                "enforcement": "ConfigMap",
                "limits": {"default": LIMIT},
            },
        ),
        "spec.targetRef.group",
    ),
    InvalidSpec(
        "rlp-no-limits",
        _rlp("bad-rlp-no-limits", limits={}),
        "spec.limits",
    ),
    InvalidSpec(
        "rlp-bad-limit-name",
        _rlp("bad-rlp-limit-name", limits={"Default": LIMIT}),
        "spec.limits.Default",
        "spec.limits",
    ),
    InvalidSpec(
        "rlp-by-client-ip-and-header",
        _rlp(
            "bad-rlp-by",
            limits={"default": {**LIMIT, "by": {"clientIP": {}, "header": "x-api-key"}}},
        ),
        "spec.limits.default.by",
        "spec.limits[default].by",
    ),
    InvalidSpec(
        "rlp-bad-allowlist-entry",
        _rlp("bad-rlp-allowlist", limits={"default": LIMIT}, allowlist=["not-an-ip"]),
        "spec.allowlist[0]",
    ),
]
