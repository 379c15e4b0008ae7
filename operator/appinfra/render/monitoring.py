"""ServiceProfile `monitoring` -> a Prometheus Operator ServiceMonitor or PodMonitor.

Pure: the Services of the namespace (or the one named) come in as arguments; which
Service selects the pods, and so which kind of monitor, is decided here, the same way
for the operator and for `appinfra render`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from appinfra.api.monitoring import MonitoringSpec, RelabelConfig
from appinfra.api.names import Obj
from appinfra.render import messages
from appinfra.render.common import Owner, child

API_VERSION = "monitoring.coreos.com/v1"
MonitorKind = Literal["ServiceMonitor", "PodMonitor"]
MONITORING_FIELD = "spec.monitoring"


def pod_labels(deployment: Obj) -> dict[str, str]:
    meta = deployment.get("spec", {}).get("template", {}).get("metadata") or {}
    return dict(meta.get("labels") or {})


def selects(service: Obj, labels: dict[str, str]) -> bool:
    """The Service sends traffic to pods with `labels`: its selector is not empty (an
    empty one selects nothing; ExternalName Services have none) and is a subset of them."""
    selector = (service.get("spec") or {}).get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def find_service(services: Iterable[Obj], labels: dict[str, str]) -> Obj | None:
    """The first Service by name that selects pods with `labels` (deterministic when
    several do: name one in spec.monitoring.service to choose another)."""
    matching = [s for s in services if selects(s, labels)]
    return min(matching, key=lambda s: s["metadata"]["name"]) if matching else None


def monitoring_service(
    spec: MonitoringSpec, deployment: Obj, services: Sequence[Obj]
) -> Obj | None:
    """The Service a ServiceMonitor goes through: the one named in `service` (whatever it
    selects: the user chose it), else the first by name whose selector matches the
    target's pod template labels; None for a PodMonitor."""
    if spec.kind == "PodMonitor":
        return None
    if spec.service is not None:
        return next((s for s in services if s["metadata"]["name"] == spec.service), None)
    return find_service(services, pod_labels(deployment))


def wants_service(spec: MonitoringSpec) -> bool:
    """Whether the monitor depends on a Service (so the reconciler has to look for one)."""
    return spec.kind != "PodMonitor"


def monitor_kind(spec: MonitoringSpec, service: Obj | None) -> MonitorKind:
    if spec.kind == "PodMonitor" or (spec.kind == "Auto" and service is None):
        return "PodMonitor"
    return "ServiceMonitor"


def service_problem(spec: MonitoringSpec, service: Obj | None, deployment: str,
                    namespace: str) -> str | None:  # fmt: skip
    """Why the ServiceMonitor cannot be rendered (its Service is missing), or None."""
    if not wants_service(spec) or service is not None:
        return None
    if spec.service is not None:
        return messages.monitoring_service_not_found(spec.service, namespace)
    if spec.kind == "ServiceMonitor":
        return messages.monitoring_no_service(deployment, namespace)
    return None


def _relabelings(items: list[RelabelConfig]) -> list[Obj]:
    return [item.to_api() for item in items]


def _endpoint(spec: MonitoringSpec, port: Obj, relabelings: list[Obj]) -> Obj:
    """One endpoint: `port` (the port fields differ between the kinds), then the rest."""
    out: Obj = {**port, "path": spec.path}
    for key, value in (
        ("scheme", spec.scheme),
        ("interval", spec.interval),
        ("scrapeTimeout", spec.scrape_timeout),
    ):
        if value is not None:
            out[key] = value
    if relabelings:
        out["relabelings"] = relabelings
    if spec.metric_relabelings:
        out["metricRelabelings"] = _relabelings(spec.metric_relabelings)
    return out


def render_monitor(owner: Owner, spec: MonitoringSpec, deployment: Obj,
                   service: Obj | None) -> Obj:  # fmt: skip
    """The ServiceMonitor (through `service`) or the PodMonitor, named after the profile.

    Call only when service_problem() is None."""
    kind = monitor_kind(spec, service)
    relabelings = _relabelings(spec.relabelings)
    if kind == "ServiceMonitor":
        assert service is not None
        name = service["metadata"]["name"]
        # `port` names the pods' port (targetPort: the Service must expose it), the same
        # meaning as for a PodMonitor, so Auto switching kinds never changes what is
        # scraped. A label selector cannot name one Service, and a Service's labels are
        # often shared (a headless twin): the first relabeling keeps only this one.
        keep = {"sourceLabels": ["__meta_kubernetes_service_name"], "regex": name,
                "action": "keep"}  # fmt: skip
        endpoint = _endpoint(spec, {"targetPort": spec.port}, [keep, *relabelings])
        labels = dict((service.get("metadata") or {}).get("labels") or {})
        monitor_spec: Obj = {
            "selector": {"matchLabels": labels} if labels else {},
            "endpoints": [endpoint],
        }
    else:
        port: Obj = {"portNumber": spec.port} if isinstance(spec.port, int) else {"port": spec.port}
        selector = deployment.get("spec", {}).get("selector") or {}
        monitor_spec = {
            "selector": selector,
            "podMetricsEndpoints": [_endpoint(spec, port, relabelings)],
        }
    obj = child(owner, API_VERSION, kind, owner.name, spec=monitor_spec)
    if spec.labels:
        # Ours last: the schema forbids setting them, and they must win regardless.
        obj["metadata"]["labels"] = {**spec.labels, **obj["metadata"]["labels"]}
    return obj
