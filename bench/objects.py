"""The bench's manifests, and what the plain client applies for a ServiceProfile.

Resource i lives in namespace `<prefix>-<i % namespaces>` and is called `svc-<i>`;
its Deployment, Ingress, ServiceProfile, SecretBinding, HealthPolicy and
RateLimitPolicy all share that name.

Deployments are paused with 0 replicas. There are no nodes to run pods, and
kube-controller-manager works through Deployments slowly (a few per second on
2 cores, its client limited to 20 requests/s), so it runs in the background of
every measurement; paused, a template change costs it one status update instead
of a new ReplicaSet. At 0 replicas the HPA controller leaves a Deployment alone.
The operator and the plain client treat them as any Deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appinfra.api.kinds import SERVICE_PROFILE
from appinfra.api.names import API_VERSION, APPLIED_ANNOTATION, applied_annotation, field_manager
from appinfra.api.validation import parse_spec, validate_object
from appinfra.kube.diff import with_hash
from appinfra.render.common import Owner
from appinfra.render.serviceprofile import render_serviceprofile

Obj = dict[str, Any]
API = API_VERSION
SP_MANAGER = field_manager("ServiceProfile")
# The operator records each kind's Deployment intent hash under its own annotation.
SP_DEPLOYMENT_ANNOTATION = applied_annotation("ServiceProfile")
LATENCY_KEY = "BENCH_SEQ"


@dataclass(frozen=True)
class Slot:
    index: int
    namespace: str

    @property
    def name(self) -> str:
        return f"svc-{self.index:04d}"


def slots(prefix: str, count: int, namespaces: int) -> list[Slot]:
    return [Slot(i, f"{prefix}-{i % namespaces:02d}") for i in range(count)]


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def deployment(s: Slot) -> Obj:
    labels = {"app": s.name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": s.name, "namespace": s.namespace, "labels": {"team": "bench"}},
        "spec": {
            "replicas": 0,
            "paused": True,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.k8s.io/pause:3.10",
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ]
                },
            },
        },
    }


def ingress(s: Slot) -> Obj:
    backend = {"service": {"name": s.name, "port": {"number": 80}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": s.name, "namespace": s.namespace},
        "spec": {
            "rules": [
                {
                    "host": f"{s.name}.{s.namespace}.bench.example",
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                }
            ]
        },
    }


def serviceprofile(s: Slot) -> Obj:
    """Every section: config (data, a template, EnvFrom, rolloutOnChange), autoscaling,
    network (ingress, egress, DNS), rollout and disruption."""
    return {
        "apiVersion": API,
        "kind": "ServiceProfile",
        "metadata": {"name": s.name, "namespace": s.namespace},
        "spec": {
            "targetRef": {"kind": "Deployment", "name": s.name},
            "config": {
                "data": {
                    "DB_HOST": f"${{DB_HOST:db.{s.namespace}.svc}}",
                    "DB_PORT": "${DB_PORT:5432}",
                    "LOG_LEVEL": "info",
                    "INDEX": str(s.index),
                },
                "files": {"app.yaml": 'name: {{ APP_NAME }}\nlisten: ":8080"\n'},
                "variables": {"APP_NAME": s.name},
                "inject": "EnvFrom",
                "rolloutOnChange": True,
            },
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": 5,
                "cpu": {"averageUtilization": 70},
            },
            "network": {
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}],
                        "ports": [{"port": 8080, "protocol": "TCP"}],
                    }
                ],
                "egress": [
                    {
                        "to": [{"podSelector": {"matchLabels": {"app": "db"}}}],
                        "ports": [{"port": 5432, "protocol": "TCP"}],
                    }
                ],
                "allowDNS": True,
            },
            "rollout": {"maxSurge": "25%", "maxUnavailable": 0, "minReadySeconds": 5},
            "disruption": {"minAvailable": 1},
        },
    }


def secretbinding(s: Slot, key: str, refresh: str) -> Obj:
    return {
        "apiVersion": API,
        "kind": "SecretBinding",
        "metadata": {"name": s.name, "namespace": s.namespace},
        "spec": {
            "store": "bench-vault",
            "refreshInterval": refresh,
            "data": [
                {"secretKey": "PASSWORD", "remoteRef": {"key": key, "property": "password"}},
                {"secretKey": "USER", "remoteRef": {"key": key, "property": "user"}},
            ],
            "target": {"name": f"{s.name}-secret"},
            "targetRef": {"kind": "Deployment", "name": s.name},
        },
    }


def vault_key(s: Slot, namespaces: int, keys_per_namespace: int) -> str:
    """Bindings share keys: binding i reads key (i // namespaces) % keys_per_namespace of
    its namespace, so every key has the same number of readers."""
    return f"{s.namespace}/key-{(s.index // namespaces) % keys_per_namespace:03d}"


def healthpolicy(s: Slot) -> Obj:
    return {
        "apiVersion": API,
        "kind": "HealthPolicy",
        "metadata": {"name": s.name, "namespace": s.namespace},
        "spec": {
            "targetRef": {"kind": "Deployment", "name": s.name},
            "mode": "Default",
            "liveness": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
            "readiness": {"httpGet": {"path": "/ready", "port": "http"}},
            "gracefulShutdown": {"preStopSleepSeconds": 5, "terminationGracePeriodSeconds": 30},
        },
    }


def ratelimitpolicy(s: Slot) -> Obj:
    return {
        "apiVersion": API,
        "kind": "RateLimitPolicy",
        "metadata": {"name": s.name, "namespace": s.namespace},
        "spec": {
            "targetRef": {"group": "networking.k8s.io", "kind": "Ingress", "name": s.name},
            "enforcement": "IngressNginx",
            "limits": {
                "default": {
                    "requests": 100,
                    "unit": "Second",
                    "burst": 200,
                    "by": {"clientIP": {}},
                }
            },
            "allowlist": ["10.0.0.0/8"],
        },
    }


def check(objs: list[Obj]) -> None:
    """The operator's own validation, before anything is sent: a typo here would
    otherwise show up as a bench that never converges."""
    for obj in objs:
        problems = validate_object(obj)
        if problems:
            raise ValueError(f"{obj['kind']}/{obj['metadata']['name']}: {problems}")


def plain_intents(s: Slot) -> list[Obj]:
    """What the operator applies for slot `s`'s ServiceProfile, rendered as `appinfra render`
    does (no uid, so no ownerReference: there is no profile object for the plain client),
    with the same applied-hash annotations the operator puts on them."""
    sp = serviceprofile(s)
    spec, problems = parse_spec(SERVICE_PROFILE, sp)
    if spec is None:
        raise ValueError(f"{s.name}: {problems}")
    owner = Owner("ServiceProfile", s.name, s.namespace, "")
    rendered = render_serviceprofile(owner, spec, deployment(s), [])
    out = [with_hash(child, APPLIED_ANNOTATION) for child in rendered.children]
    if rendered.deployment is not None:
        out.append(with_hash(rendered.deployment, SP_DEPLOYMENT_ANNOTATION))
    return out
