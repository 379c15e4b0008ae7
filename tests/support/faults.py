"""Helpers for the fault tests (tests/e2e/faults/): their own OpenBao, operators
scoped to a test's namespaces, and the objects and checks several of them use.

The servers themselves are package-scoped fixtures in tests/e2e/faults/conftest.py.
"""

from __future__ import annotations

import json
import secrets
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import hvac
import yaml

from tests.e2e.conftest import STARTED, Operator
from tests.support.kube import Cluster
from tests.support.objects import apply, condition, deployment, get
from tests.support.servers import ServerProcess, http_ok

SYSTEM = "faults-system"  # credentials the stores read, on our own control plane
MANAGED = "app.kubernetes.io/managed-by=appinfra"
BAO_TOKEN = secrets.token_hex(16)
AWS_KEYS = {"accessKeyIDKey": "id", "secretAccessKeyKey": "secret"}

Obj = dict[str, Any]


def forget(*processes: ServerProcess | None) -> None:
    """Drop our servers from the session's log-attachment list once they are gone, so
    other tests' failure reports do not carry them."""
    for proc in processes:
        if proc in STARTED:
            STARTED.remove(proc)


@dataclass
class Bao:
    """Our own OpenBao dev server on a fixed port: stoppable, and back at the same address."""

    address: str
    process: ServerProcess

    def start(self) -> None:
        self.process.start()
        if self.process not in STARTED:
            STARTED.append(self.process)
        self.process.wait_ready(lambda: http_ok(f"{self.address}/v1/sys/health"), 60)

    def stop(self) -> None:
        self.process.stop()

    def client(self) -> hvac.Client:
        return hvac.Client(url=self.address, token=BAO_TOKEN)

    def put(self, path: str, data: dict[str, Any]) -> None:
        self.client().secrets.kv.v2.create_or_update_secret(path=path, secret=data)


def secrets_manager(endpoint: str) -> Any:
    return boto3.client(
        "secretsmanager", endpoint_url=endpoint, region_name="eu-west-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


def new_operator(
    kube: Cluster, faults_dir: Path, name: str, watch: list[str], config: Obj, **env: str
) -> Operator:
    """`appinfra run` (not started yet) on our control plane, watching only `watch`, with
    its own configuration file and log under faults_dir/name."""
    home = faults_dir / name
    home.mkdir(exist_ok=True)
    (home / "operator-config.yaml").write_text(yaml.safe_dump(config))
    op = Operator(kube, home, name, *[arg for ns in watch for arg in ("--namespace", ns)])
    op.process.argv.remove("--all-namespaces")
    # The production default resync (600 s): no periodic resync within a test, so every
    # reconcile a test sees was caused by what it did, or is a retry.
    op.process.env.update({"APPINFRA_RESYNC_SECONDS": "600", **env})
    return op


def stop_operator(op: Operator) -> None:
    began = time.monotonic()
    op.stop()
    took = time.monotonic() - began
    if took > 10:  # ServerProcess.stop waits 30 s for SIGTERM, then SIGKILLs
        warnings.warn(f"{op.process.name} took {took:.0f}s to stop on SIGTERM", stacklevel=1)
    forget(op.process)


Launch = Callable[..., Operator]


def namespaces(cluster: Cluster, *names: str) -> None:
    apply(cluster, *({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
                     for n in names))  # fmt: skip


def create(cluster: Cluster, *objs: Obj) -> None:
    """`kubectl create`: no last-applied annotation (which would double a big object)."""
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objs)}
    cluster.kubectl("create", "-f", "-", input=json.dumps(doc))


def idle_deployment(namespace: str, name: str) -> Obj:
    """A Deployment scaled to zero: no Pods, no ReplicaSet churn, less load on two cores
    (and the HPA leaves it alone: scaling is disabled at zero replicas)."""
    dep = deployment(namespace, name)
    dep["spec"]["replicas"] = 0
    return dep


def full_spec(index: int) -> Obj:
    """Every ServiceProfile section that produces a child, with per-profile content."""
    return {
        "config": {
            "data": {"INDEX": "${INDEX}", "MODE": "${MODE:steady}"},
            "files": {"app.yaml": "index: {{ INDEX }}\n"},
            "variables": {"INDEX": str(index)},
        },
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "cpu": {"averageUtilization": 70}},
        "network": {
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}]}],
        },
        "disruption": {"maxUnavailable": 1},
    }


def is_ready(obj: Obj) -> bool:
    return bool(
        condition(obj, "Ready").get("status") == "True"
        and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
    )


def listed(cluster: Cluster, namespace: str, kinds: str, *args: str) -> list[Obj]:
    items: list[Obj] = cluster.kubectl_json("-n", namespace, "get", kinds, *args)["items"]
    return items


def versions(cluster: Cluster, namespace: str, kinds: str) -> dict[str, str]:
    return {
        f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in listed(cluster, namespace, kinds)
    }


def secret_state(cluster: Cluster, namespace: str, name: str) -> tuple[Obj, str]:
    """(data, resourceVersion) of a Secret: "byte for byte the same" compares both."""
    secret = get(cluster, "secret", namespace, name)
    assert secret is not None, f"Secret {namespace}/{name} is gone"
    return secret.get("data") or {}, secret["metadata"]["resourceVersion"]


def assert_alive(op: Operator) -> None:
    assert op.process.running(), f"the operator died:\n{op.process.log_tail()}"
    assert http_ok(f"http://127.0.0.1:{op.health_port}/healthz")


def vault_store(bao: Bao, *allowed: str) -> Obj:
    auth = {"token": {"secretRef": {"namespace": SYSTEM, "name": "bao-token", "key": "token"}}}
    return {
        "vault": {"address": bao.address, "kv": {"mount": "secret", "version": 2}, "auth": auth},
        "allowedNamespaces": list(allowed),
        "keyPrefix": "{namespace}/",
    }


def aws_store(endpoint: str, *allowed: str) -> Obj:
    auth = {"secretRef": {"namespace": SYSTEM, "name": "aws-keys", **AWS_KEYS}}
    aws = {"service": "SecretsManager", "region": "eu-west-1", "endpoint": endpoint, "auth": auth}
    return {"aws": aws, "allowedNamespaces": list(allowed), "keyPrefix": "{namespace}/"}
