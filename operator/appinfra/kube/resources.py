"""The Kubernetes resources appinfra reads and writes, with their REST paths.

A static table instead of API discovery: discovery costs round trips at every
start and these resources are stable, versioned APIs.
"""

from __future__ import annotations

from dataclasses import dataclass

from appinfra.api.names import GROUP, PLURALS, VERSION


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    optional: bool = False
    """Served only when a CRD of someone else's is installed (the Prometheus Operator's):
    its informer waits for the API instead of failing, and a reconcile that needs it
    reports the missing CRD (kube/apis.py)."""

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base


CONFIGMAP = Resource("", "v1", "configmaps", "ConfigMap")
SECRET = Resource("", "v1", "secrets", "Secret")
SERVICE = Resource("", "v1", "services", "Service")
EVENT = Resource("", "v1", "events", "Event")
DEPLOYMENT = Resource("apps", "v1", "deployments", "Deployment")
REPLICASET = Resource("apps", "v1", "replicasets", "ReplicaSet")
HPA = Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
NETWORKPOLICY = Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy")
INGRESS = Resource("networking.k8s.io", "v1", "ingresses", "Ingress")
PDB = Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")

# The Prometheus Operator's kinds (monitoring.coreos.com/v1): children of ServiceProfile
# (monitoring) and HealthPolicy (alerts) when their CRDs are installed.
MONITORING_GROUP = "monitoring.coreos.com"
SERVICEMONITOR = Resource(
    MONITORING_GROUP, "v1", "servicemonitors", "ServiceMonitor", optional=True
)
PODMONITOR = Resource(MONITORING_GROUP, "v1", "podmonitors", "PodMonitor", optional=True)
PROMETHEUSRULE = Resource(
    MONITORING_GROUP, "v1", "prometheusrules", "PrometheusRule", optional=True
)

OURS = {kind: Resource(GROUP, VERSION, plural, kind) for kind, plural in PLURALS.items()}
"""The appinfra kinds' own resources, by kind."""
SERVICEPROFILE = OURS["ServiceProfile"]
SECRETBINDING = OURS["SecretBinding"]
HEALTHPOLICY = OURS["HealthPolicy"]
RATELIMITPOLICY = OURS["RateLimitPolicy"]

BY_KIND: dict[str, Resource] = {
    r.kind: r
    for r in (
        CONFIGMAP,
        SECRET,
        SERVICE,
        EVENT,
        DEPLOYMENT,
        REPLICASET,
        HPA,
        NETWORKPOLICY,
        INGRESS,
        PDB,
        SERVICEMONITOR,
        PODMONITOR,
        PROMETHEUSRULE,
        SERVICEPROFILE,
        SECRETBINDING,
        HEALTHPOLICY,
        RATELIMITPOLICY,
    )
}


def resource_of(obj: dict[str, object]) -> Resource:
    """The Resource for a manifest, by its kind (checked against its apiVersion)."""
    kind = str(obj.get("kind", ""))
    res = BY_KIND.get(kind)
    if res is None or res.api_version != obj.get("apiVersion"):
        raise KeyError(f"unsupported resource {obj.get('apiVersion')}/{kind}")
    return res
