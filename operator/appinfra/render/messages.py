"""What users are told when a resource cannot be rendered or applied, worded once: the
operator's status and `appinfra render` (offline) state the same problems, and an
e2e test compares the two."""

from __future__ import annotations

from collections.abc import Iterable


def target_not_found(kind: str, name: str, namespace: str) -> str:
    return (
        f"{kind} {name} not found in namespace {namespace}; "
        "it will be configured as soon as it is created"
    )


def consumer_not_found(deployment: str) -> str:
    return (
        f"Deployment {deployment} not found; the Secret is "
        "synced and will be rolled out once it exists"
    )


def variables_source_missing(index: int, configmap: str, namespace: str) -> str:
    return (
        f"spec.config.variablesFrom[{index}].configMapRef.name: ConfigMap {configmap} "
        f"not found in namespace {namespace}; create it or remove the entry"
    )


def variables_missing(names: Iterable[str]) -> str:
    return (
        "spec.config.data: no value and no default for variable(s) "
        + ", ".join(names)
        + "; set them in spec.config.variables or variablesFrom, or add ${NAME:default}"
    )


def enforcement_needs_ingress(target_kind: str) -> str:
    return (
        f"spec.enforcement: the operator's default enforcement IngressNginx needs an "
        f"Ingress target, not a {target_kind}; set spec.enforcement"
    )


def store_not_configured(store: str, configured: Iterable[str]) -> str:
    return (
        f"spec.store: store {store!r} is not configured (configured stores: "
        f"{', '.join(configured) or 'none'}); ask the cluster admin or fix the name"
    )


CRD_NOT_INSTALLED = "CRDNotInstalled"
"""Accepted=False reason: a section of the spec needs another project's CRD (the
Prometheus Operator's) that this cluster does not serve."""


def crd_not_installed(field: str, kind: str, crd: str) -> str:
    return (
        f"{field}: the {kind} API (CRD {crd}, from the Prometheus Operator) is not "
        f"installed in this cluster; install the Prometheus Operator's CRDs or remove "
        f"{field}. The rest of the spec is applied, and the {kind} is created as soon "
        "as the CRD is installed"
    )


SERVICE_NOT_FOUND = "ServiceNotFound"
"""Accepted=False reason: a ServiceMonitor's Service is not there (the rest is applied)."""


def monitoring_service_not_found(service: str, namespace: str) -> str:
    return (
        f"spec.monitoring.service: Service {service} not found in namespace {namespace}; "
        "create it, fix the name, or remove the field. The rest of the spec is applied, "
        "and the ServiceMonitor is created once the Service exists"
    )


def monitoring_no_service(deployment: str, namespace: str) -> str:
    return (
        "spec.monitoring.kind: a ServiceMonitor needs a Service selecting the pods of "
        f"Deployment {deployment}, and no Service in namespace {namespace} does; create one, "
        "name one in spec.monitoring.service, or set kind to Auto or PodMonitor. The rest "
        "of the spec is applied"
    )
