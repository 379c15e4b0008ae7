"""The providers against real stores: OpenBao (and its kubernetes auth through our API
server's TokenReview), and moto's Secrets Manager, SSM and STS over HTTP.

Every test uses its own store name, so the backend request counter it reads counts
its own requests only. Kubernetes Secrets holding credentials are stood in for by a
dict behind the same `Kube.read_secret_key` callable the operator passes, except in
the one test that runs the assumed role through `appinfra run` (the session operator).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import socket
import ssl
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import hvac
import pytest
from kubernetes import client
from prometheus_client import REGISTRY

from appinfra.api.operatorconfig import AwsStore, OperatorConfig, VaultStore
from appinfra.providers import (
    BackendUnavailable,
    Forbidden,
    Kube,
    Provider,
    Providers,
    RemoteSecret,
    SecretNotFound,
)
from appinfra.providers.aws import (
    MAX_PATH_KEYS,
    PAGE_SIZE,
    ParameterStoreProvider,
    SecretsManagerProvider,
)
from appinfra.providers.vault import VaultProvider
from tests.e2e.conftest import SYSTEM_NAMESPACE, Moto, OpenBao, Operator, Stores
from tests.support.kube import Cluster
from tests.support.objects import apply, condition, get, wait_condition
from tests.support.openbao import enable_kubernetes_auth
from tests.support.servers import ServerProcess, free_port, http_ok, tool

REGION = "eu-west-1"
SB = "secretbinding"


# ---------------------------------------------------------------- helpers


class Secrets:
    """Kubernetes Secrets as `Kube.read_secret_key` sees them; counts reads."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str], str] = {}
        self.reads = 0

    def put(self, namespace: str, name: str, key: str, value: str) -> None:
        self.values[(namespace, name, key)] = value

    def read(self, namespace: str, name: str, key: str) -> str:
        self.reads += 1
        try:
            return self.values[(namespace, name, key)]
        except KeyError:
            raise SecretNotFound(f"Secret {namespace}/{name} has no key {key!r}") from None


def no_tokens(namespace: str, service_account: str, audiences: list[str]) -> str:
    raise AssertionError("this store does not use kubernetes auth")


def kube(secrets_: Secrets, token_for: Callable[[str, str, list[str]], str] = no_tokens) -> Kube:
    return Kube(token_for=token_for, read_secret_key=secrets_.read)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def requests_total(store: str, operation: str, status: str = "ok") -> float:
    value = REGISTRY.get_sample_value(
        "appinfra_backend_requests_total",
        {"store": store, "operation": operation, "status": status},
    )
    return value or 0.0


def took(call: Callable[[], Any]) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        call()
    except Exception as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


def ports_for_openbao() -> int:
    """A free port whose successor (OpenBao's cluster port) is free too."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@dataclass
class Bao:
    """A private OpenBao (the session's one cannot have an audit device: OpenBao only
    declares those in a config file)."""

    address: str
    root_token: str
    home: Path

    def root(self, **kwargs: Any) -> hvac.Client:
        return hvac.Client(url=self.address, token=self.root_token, **kwargs)


def start_bao(home: Path, *args: str, scheme: str = "http") -> Iterator[Bao]:
    home.mkdir(parents=True, exist_ok=True)
    port = ports_for_openbao()
    token = secrets.token_hex(16)
    proc = ServerProcess(
        home.name,
        [
            tool("bao"),
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
            *args,
        ],
        home,
        env={"HOME": str(home)},
    ).start()
    address = f"{scheme}://127.0.0.1:{port}"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def healthy() -> bool:
        with urllib.request.urlopen(f"{address}/v1/sys/health", timeout=2, context=context) as r:
            return bool(r.status == 200)

    proc.wait_ready(
        healthy if scheme == "https" else lambda: http_ok(f"{address}/v1/sys/health"), 60
    )
    try:
        yield Bao(address, token, home)
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def audited_bao(workdir: Path) -> Iterator[Bao]:
    """OpenBao with a file audit device: its own count of the requests it served."""
    home = workdir / "openbao-audited"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "audit.hcl"
    config.write_text(
        'audit "file" "count" {\n  options {\n    file_path = "%s"\n  }\n}\n' % (home / "audit.log")
    )
    yield from start_bao(home, f"-config={config}")


@pytest.fixture(scope="module")
def tls_bao(workdir: Path) -> Iterator[Bao]:
    """OpenBao serving TLS with a certificate from its own, private CA."""
    home = workdir / "openbao-tls"
    (home / "certs").mkdir(parents=True, exist_ok=True)
    yield from start_bao(home, "-dev-tls", f"-dev-tls-cert-dir={home / 'certs'}", scheme="https")


def vault_store(address: str, auth: dict[str, Any], **extra: Any) -> VaultStore:
    return VaultStore.model_validate({"address": address, "auth": auth, **extra})


def token_auth(secrets_: Secrets, token: str) -> dict[str, Any]:
    secrets_.put("appinfra", "vault-token", "token", token)
    return {
        "token": {"secretRef": {"namespace": "appinfra", "name": "vault-token", "key": "token"}}
    }


@pytest.fixture
def root(openbao: OpenBao) -> hvac.Client:
    return hvac.Client(url=openbao.address, token=openbao.root_token)


def with_token(openbao: OpenBao, token: str, **extra: Any) -> tuple[VaultProvider, Secrets, str]:
    name = unique("vault")
    store = Secrets()
    provider = VaultProvider(
        name, vault_store(openbao.address, token_auth(store, token), **extra), kube(store)
    )
    return provider, store, name


# ---------------------------------------------------------------- Vault: KV


def test_vault_kv2_latest_and_a_given_version(openbao: OpenBao, root: hvac.Client) -> None:
    key = f"shop/{uuid.uuid4().hex}/db"
    root.secrets.kv.v2.create_or_update_secret(path=key, secret={"password": "one"})
    root.secrets.kv.v2.create_or_update_secret(path=key, secret={"password": "two", "user": "app"})
    provider, _, name = with_token(openbao, openbao.root_token)
    try:
        latest = provider.fetch(key, version=None, namespace="shop")
        first = provider.fetch(key, version="1", namespace="shop")
    finally:
        provider.close()
    assert latest == RemoteSecret({"password": "two", "user": "app"}, None, "2")
    assert first == RemoteSecret({"password": "one"}, None, "1")
    assert requests_total(name, "get_secret") == 2


def test_vault_kv1(openbao: OpenBao, root: hvac.Client) -> None:
    mount = unique("kv1")
    root.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    root.secrets.kv.v1.create_or_update_secret(
        path="shop/db", secret={"password": "v1-pw"}, mount_point=mount
    )
    provider, _, _ = with_token(openbao, openbao.root_token, kv={"mount": mount, "version": 1})
    try:
        found = provider.fetch("shop/db", version=None, namespace="shop")
        with pytest.raises(SecretNotFound):
            provider.fetch("shop/missing", version=None, namespace="shop")
    finally:
        provider.close()
    assert found == RemoteSecret({"password": "v1-pw"}, None, None)


def test_vault_missing_deleted_or_unknown_version_is_not_found(
    openbao: OpenBao, root: hvac.Client
) -> None:
    key = f"shop/{uuid.uuid4().hex}/db"
    root.secrets.kv.v2.create_or_update_secret(path=key, secret={"password": "gone"})
    root.secrets.kv.v2.create_or_update_secret(path=key, secret={"password": "gone-too"})
    root.secrets.kv.v2.delete_latest_version_of_secret(path=key)
    provider, _, name = with_token(openbao, openbao.root_token)
    try:
        for wanted_key, version in [("shop/nothing/here", None), (key, None), (key, "9")]:
            with pytest.raises(SecretNotFound) as missing:
                provider.fetch(wanted_key, version=version, namespace="shop")
            assert wanted_key in str(missing.value)
            assert name in str(missing.value)
        assert provider.fetch(key, version="1", namespace="shop").properties == {"password": "gone"}
    finally:
        provider.close()


def test_vault_wrong_mount_is_forbidden_not_a_missing_secret(openbao: OpenBao) -> None:
    """A typo in kv.mount must not read as "the secret is gone" (deletionPolicy: Delete)."""
    provider, _, _ = with_token(openbao, openbao.root_token, kv={"mount": unique("nomount")})
    try:
        with pytest.raises(Forbidden, match=r"kv\.mount"):
            provider.fetch("shop/db", version=None, namespace="shop")
    finally:
        provider.close()


# ---------------------------------------------------------------- Vault: auth


def test_vault_policy_denial_is_forbidden_after_one_fresh_token(
    openbao: OpenBao, root: hvac.Client
) -> None:
    base = f"shop/{uuid.uuid4().hex}"
    root.secrets.kv.v2.create_or_update_secret(path=f"{base}/allowed", secret={"k": "ok"})
    root.secrets.kv.v2.create_or_update_secret(path=f"{base}/denied", secret={"k": "no"})
    policy = unique("policy")
    root.sys.create_or_update_policy(
        policy, f'path "secret/data/{base}/allowed" {{ capabilities = ["read"] }}'
    )
    token = root.auth.token.create(policies=[policy], ttl="1h")["auth"]["client_token"]
    provider, store, name = with_token(openbao, token)
    try:
        assert provider.fetch(f"{base}/allowed", version=None, namespace="shop").properties == {
            "k": "ok"
        }
        with pytest.raises(Forbidden) as denied:
            provider.fetch(f"{base}/denied", version=None, namespace="shop")
    finally:
        provider.close()
    assert f"secret/data/{base}/denied" in str(denied.value)
    assert "permission denied" in str(denied.value)
    # The cached token was refused, so the token was re-read once and the read retried.
    assert requests_total(name, "get_secret", "Forbidden") == 2
    assert store.reads == 2


def test_vault_token_rotated_in_its_secret_is_picked_up_on_refusal(
    openbao: OpenBao, root: hvac.Client
) -> None:
    key = f"shop/{uuid.uuid4().hex}/db"
    root.secrets.kv.v2.create_or_update_secret(path=key, secret={"k": "v"})
    old = root.auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
    provider, store, _ = with_token(openbao, old)
    try:
        provider.fetch(key, version=None, namespace="shop")
        root.auth.token.revoke(old)
        new = root.auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
        store.put("appinfra", "vault-token", "token", new)
        assert provider.fetch(key, version=None, namespace="shop").properties == {"k": "v"}
    finally:
        provider.close()


@dataclass
class AppRole:
    mount: str
    role_id: str
    secret_id: str
    base: str


def make_app_role(root: hvac.Client, **role: Any) -> AppRole:
    mount = unique("approle")
    base = f"shop/{uuid.uuid4().hex}"
    policy = unique("approle-read")
    root.sys.enable_auth_method("approle", path=mount)
    root.sys.create_or_update_policy(
        policy, f'path "secret/data/{base}/*" {{ capabilities = ["read"] }}'
    )
    root.auth.approle.create_or_update_approle(
        "app", token_policies=[policy], mount_point=mount, **role
    )
    role_id = root.auth.approle.read_role_id("app", mount_point=mount)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("app", mount_point=mount)["data"]["secret_id"]
    for number in range(2):
        root.secrets.kv.v2.create_or_update_secret(path=f"{base}/k{number}", secret={"n": number})
    return AppRole(mount, role_id, secret_id, base)


def app_role_provider(
    openbao: OpenBao, role: AppRole, clock: Callable[[], float] = time.monotonic
) -> tuple[VaultProvider, str]:
    store = Secrets()
    store.put("appinfra", "approle", "secret-id", role.secret_id)
    auth = {
        "appRole": {
            "roleId": role.role_id,
            "mountPath": role.mount,
            "secretRef": {"namespace": "appinfra", "name": "approle", "key": "secret-id"},
        }
    }
    name = unique("vault-approle")
    return VaultProvider(name, vault_store(openbao.address, auth), kube(store), clock), name


def test_vault_app_role_logs_in_once_and_reuses_the_token(
    openbao: OpenBao, root: hvac.Client
) -> None:
    role = make_app_role(root, token_ttl="1h")
    provider, name = app_role_provider(openbao, role)
    try:
        for number in (0, 1, 0):
            secret = provider.fetch(f"{role.base}/k{number}", version=None, namespace="shop")
            assert secret.properties == {"n": number}
        # Revoked behind our back: refused once, logged in again, read.
        root.sys.revoke_prefix(f"auth/{role.mount}/login")
        assert provider.fetch(f"{role.base}/k1", version=None, namespace="shop").properties
    finally:
        provider.close()
    assert requests_total(name, "login") == 2
    assert requests_total(name, "get_secret") == 4
    assert requests_total(name, "get_secret", "Forbidden") == 1


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


def test_vault_token_near_expiry_is_renewed_or_replaced(
    openbao: OpenBao, root: hvac.Client
) -> None:
    renewable = make_app_role(root, token_ttl="30s", token_max_ttl="1h")
    batch = make_app_role(root, token_ttl="30s", token_type="batch")  # batch: not renewable
    for role, renewals, logins in [(renewable, 1, 1), (batch, 0, 2)]:
        clock = Clock()
        provider, name = app_role_provider(openbao, role, clock)
        try:
            provider.fetch(f"{role.base}/k0", version=None, namespace="shop")
            clock.now += 25  # within the margin before the 30 s lease ends
            provider.fetch(f"{role.base}/k1", version=None, namespace="shop")
        finally:
            provider.close()
        assert requests_total(name, "renew") == renewals
        assert requests_total(name, "login") == logins


def test_vault_kubernetes_auth_through_token_review(
    cluster: Cluster, namespace: str, openbao: OpenBao, root: hvac.Client
) -> None:
    other = unique("t-other")
    with cluster.api() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
        for ns in (namespace, other):
            core.create_namespaced_service_account(
                ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="payments"))
            )
    try:
        mount = f"k8s-{namespace}"
        enable_kubernetes_auth(root, cluster, namespace, mount)
        policy = f"{namespace}-read"
        root.sys.create_or_update_policy(
            policy, f'path "secret/data/{namespace}/*" {{ capabilities = ["read"] }}'
        )
        root.auth.kubernetes.create_role(
            "appinfra",
            bound_service_account_names=["payments"],
            bound_service_account_namespaces=[namespace],
            policies=[policy],
            audience="appinfra-test",
            mount_point=mount,
        )
        root.secrets.kv.v2.create_or_update_secret(path=f"{namespace}/db", secret={"pw": "k8s"})

        requested: list[tuple[str, str, list[str]]] = []

        def token_for(ns: str, sa: str, audiences: list[str]) -> str:
            requested.append((ns, sa, audiences))
            return cluster.token_for(ns, sa, audiences)

        auth = {
            "kubernetes": {
                "role": "appinfra",
                "mountPath": mount,
                "serviceAccount": "payments",
                "audience": "appinfra-test",
            }
        }
        name = unique("vault-k8s")
        provider = VaultProvider(
            name, vault_store(openbao.address, auth), kube(Secrets(), token_for)
        )
        try:
            assert provider.fetch(f"{namespace}/db", version=None, namespace=namespace) == (
                RemoteSecret({"pw": "k8s"}, None, "1")
            )
            provider.fetch(f"{namespace}/db", version=None, namespace=namespace)
            # Another namespace logs in as its own service account, which the role refuses.
            with pytest.raises(Forbidden) as refused:
                provider.fetch(f"{namespace}/db", version=None, namespace=other)
        finally:
            provider.close()
        assert requested == [
            (namespace, "payments", ["appinfra-test"]),
            (other, "payments", ["appinfra-test"]),
        ]
        assert "kubernetes auth" in str(refused.value)
        assert f"{other}/payments" in str(refused.value)
        assert requests_total(name, "login") == 1
        assert requests_total(name, "login", "Forbidden") == 1
    finally:
        with cluster.api() as api:
            client.CoreV1Api(api).delete_namespace(other)
            client.RbacAuthorizationV1Api(api).delete_cluster_role_binding(
                f"{namespace}-vault-reviewer"
            )


def test_vault_kubernetes_auth_token_has_the_vault_audience_by_default(
    cluster: Cluster, namespace: str, openbao: OpenBao, root: hvac.Client
) -> None:
    """No `audience` configured: the TokenRequest asks for "vault", so the token is no
    good against the API server itself; a role bound to audience "vault" accepts it and
    a role bound to another audience refuses it (OpenBao checks through TokenReview)."""
    with cluster.api() as api:
        client.CoreV1Api(api).create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default-aud"))
        )
    mount = f"k8s-aud-{namespace}"
    enable_kubernetes_auth(root, cluster, namespace, mount)
    try:
        policy = f"{namespace}-aud-read"
        root.sys.create_or_update_policy(
            policy, f'path "secret/data/{namespace}/*" {{ capabilities = ["read"] }}'
        )
        for role, audience in (("vault-aud", "vault"), ("other-aud", "not-vault")):
            root.auth.kubernetes.create_role(
                role,
                bound_service_account_names=["default-aud"],
                bound_service_account_namespaces=[namespace],
                policies=[policy],
                audience=audience,
                mount_point=mount,
            )
        root.secrets.kv.v2.create_or_update_secret(path=f"{namespace}/aud", secret={"pw": "a"})
        requested: list[list[str]] = []

        def token_for(ns: str, sa: str, audiences: list[str]) -> str:
            requested.append(audiences)
            return cluster.token_for(ns, sa, audiences)

        def provider(role: str) -> VaultProvider:
            auth = {
                "kubernetes": {"role": role, "mountPath": mount, "serviceAccount": "default-aud"}
            }
            return VaultProvider(
                unique("vault-aud"), vault_store(openbao.address, auth), kube(Secrets(), token_for)
            )

        accepted, refused = provider("vault-aud"), provider("other-aud")
        try:
            got = accepted.fetch(f"{namespace}/aud", version=None, namespace=namespace)
            assert got.properties == {"pw": "a"}
            with pytest.raises(Forbidden):
                refused.fetch(f"{namespace}/aud", version=None, namespace=namespace)
        finally:
            accepted.close()
            refused.close()
        assert requested == [["vault"], ["vault"]]
    finally:
        with cluster.api() as api:
            client.RbacAuthorizationV1Api(api).delete_cluster_role_binding(
                f"{namespace}-vault-reviewer"
            )


# ---------------------------------------------------------------- Vault: outages and TLS


def test_vault_closed_port_is_unavailable_fast() -> None:
    store = Secrets()
    address = f"http://127.0.0.1:{free_port()}"
    provider = VaultProvider(
        "vault-closed", vault_store(address, token_auth(store, "t")), kube(store)
    )
    try:
        error, seconds = took(lambda: provider.fetch("shop/db", version=None, namespace="shop"))
    finally:
        provider.close()
    assert isinstance(error, BackendUnavailable)
    assert "cannot connect" in str(error)
    assert seconds < 10


def test_vault_silent_server_times_out() -> None:
    """A server that accepts connections and never answers (a hung proxy)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        store = Secrets()
        provider = VaultProvider(
            "vault-silent", vault_store(address, token_auth(store, "t")), kube(store)
        )
        try:
            error, seconds = took(lambda: provider.fetch("shop/db", version=None, namespace="shop"))
        finally:
            provider.close()
    assert isinstance(error, BackendUnavailable)
    assert "no answer within 5s" in str(error)
    assert seconds < 10


def test_vault_ca_bundle(tls_bao: Bao) -> None:
    ca = tls_bao.home / "certs" / "vault-ca.pem"
    tls_bao.root(verify=str(ca)).secrets.kv.v2.create_or_update_secret(
        path="shop/tls", secret={"over": "tls"}
    )
    store = Secrets()
    auth = token_auth(store, tls_bao.root_token)
    trusted = VaultProvider(
        "vault-tls", vault_store(tls_bao.address, auth, caBundle=ca.read_text()), kube(store)
    )
    untrusted = VaultProvider("vault-tls-no-ca", vault_store(tls_bao.address, auth), kube(store))
    try:
        assert trusted.validate() == []
        assert trusted.fetch("shop/tls", version=None, namespace="shop").properties == {
            "over": "tls"
        }
        with pytest.raises(BackendUnavailable, match="caBundle"):
            untrusted.fetch("shop/tls", version=None, namespace="shop")
    finally:
        trusted.close()
        untrusted.close()


# ---------------------------------------------------------------- AWS


def aws_store(moto_endpoint: str, service: str, **extra: Any) -> tuple[AwsStore, Secrets]:
    store = Secrets()
    store.put("appinfra", "aws", "id", "testing")
    store.put("appinfra", "aws", "secret", "testing")
    auth = {
        "secretRef": {
            "namespace": "appinfra",
            "name": "aws",
            "accessKeyIDKey": "id",
            "secretAccessKeyKey": "secret",
        }
    }
    config = {"service": service, "region": REGION, "endpoint": moto_endpoint, "auth": auth}
    return AwsStore.model_validate({**config, **extra}), store


def boto(moto: Moto, service: Any) -> Any:
    return boto3.client(
        service,
        endpoint_url=moto.endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def secrets_manager(moto: Moto, **extra: Any) -> tuple[SecretsManagerProvider, str]:
    name = unique("sm")
    config, store = aws_store(moto.endpoint, "SecretsManager", **extra)
    return SecretsManagerProvider(name, config, kube(store)), name


def parameter_store(moto: Moto) -> tuple[ParameterStoreProvider, str]:
    name = unique("ssm")
    config, store = aws_store(moto.endpoint, "ParameterStore")
    return ParameterStoreProvider(name, config, kube(store), "/{namespace}/"), name


def test_secrets_manager_json_plain_and_binary(moto: Moto) -> None:
    sm = boto(moto, "secretsmanager")
    base = f"shop/{uuid.uuid4().hex}"
    document = json.dumps({"password": "pw", "port": 5432})
    created = sm.create_secret(Name=f"{base}/json", SecretString=document)
    sm.create_secret(Name=f"{base}/plain", SecretString="just-a-token")
    sm.create_secret(Name=f"{base}/binary", SecretBinary=b"\x00\xffbin")
    provider, name = secrets_manager(moto)
    try:
        as_json = provider.fetch(f"{base}/json", version=None, namespace="shop")
        plain = provider.fetch(f"{base}/plain", version=None, namespace="shop")
        binary = provider.fetch(f"{base}/binary", version=None, namespace="shop")
    finally:
        provider.close()
    assert as_json == RemoteSecret(
        {"password": "pw", "port": 5432}, document.encode(), created["VersionId"]
    )
    assert (plain.properties, plain.raw) == (None, b"just-a-token")
    assert (binary.properties, binary.raw) == (None, b"\x00\xffbin")
    assert requests_total(name, "get_secret") == 3


def test_secrets_manager_versions_by_stage_and_id(moto: Moto) -> None:
    sm = boto(moto, "secretsmanager")
    key = f"shop/{uuid.uuid4().hex}"
    first = sm.create_secret(Name=key, SecretString="one")["VersionId"]
    second = sm.put_secret_value(SecretId=key, SecretString="two")["VersionId"]
    provider, _ = secrets_manager(moto)
    try:
        read = {
            version: provider.fetch(key, version=version, namespace="shop")
            for version in (None, "AWSCURRENT", "AWSPREVIOUS", first, second)
        }
        with pytest.raises(SecretNotFound):
            provider.fetch(key, version="NO-SUCH-STAGE", namespace="shop")
        with pytest.raises(SecretNotFound):
            provider.fetch(f"shop/{uuid.uuid4().hex}", version=None, namespace="shop")
    finally:
        provider.close()
    assert {version: (s.raw, s.version) for version, s in read.items()} == {
        None: (b"two", second),
        "AWSCURRENT": (b"two", second),
        "AWSPREVIOUS": (b"one", first),
        first: (b"one", first),
        second: (b"two", second),
    }


def test_parameter_store_values_and_versions(moto: Moto) -> None:
    ssm = boto(moto, "ssm")
    base = f"/shop/{uuid.uuid4().hex}"
    ssm.put_parameter(Name=f"{base}/plain", Value="v1", Type="String")
    ssm.put_parameter(Name=f"{base}/plain", Value="v2", Type="String", Overwrite=True)
    ssm.put_parameter(Name=f"{base}/secure", Value="decrypted!", Type="SecureString")
    provider, name = parameter_store(moto)
    try:
        latest = provider.fetch(f"{base}/plain", version=None, namespace="shop")
        first = provider.fetch(f"{base}/plain", version="1", namespace="shop")
        secure = provider.fetch(f"{base}/secure", version=None, namespace="shop")
        for key, version in [(f"{base}/missing", None), (f"{base}/plain", "9")]:
            with pytest.raises(SecretNotFound):
                provider.fetch(key, version=version, namespace="shop")
    finally:
        provider.close()
    assert latest == RemoteSecret(None, b"v2", "2")
    assert first == RemoteSecret(None, b"v1", "1")
    assert secure == RemoteSecret(None, b"decrypted!", "1")
    assert requests_total(name, "get_secret") == 3
    assert requests_total(name, "get_secret", "SecretNotFound") == 2


def test_parameter_store_path_listing(moto: Moto) -> None:
    ssm = boto(moto, "ssm")
    base = f"/shop/{uuid.uuid4().hex}"
    expected = {f"k{number}": f"value-{number}" for number in range(9)}
    for key, value in expected.items():
        ssm.put_parameter(Name=f"{base}/app/{key}", Value=value, Type="String")
    ssm.put_parameter(Name=f"{base}/app/db/password", Value="pw", Type="SecureString")
    ssm.put_parameter(Name=f"{base}/app/db/user", Value="app", Type="String")
    ssm.put_parameter(Name=f"{base}/app/api/key.v2", Value="k", Type="String")
    ssm.put_parameter(Name=f"{base}/other", Value="not under the path", Type="String")
    expected |= {"db_password": "pw", "db_user": "app", "api_key.v2": "k"}
    provider, name = parameter_store(moto)
    try:
        listed = provider.fetch(f"{base}/app/", version=None, namespace="shop", path_prefix=True)
        with pytest.raises(SecretNotFound):
            provider.fetch(f"{base}/nothing/", version=None, namespace="shop", path_prefix=True)
        with pytest.raises(Forbidden, match="no versions"):
            provider.fetch(f"{base}/app/", version="2", namespace="shop", path_prefix=True)
    finally:
        provider.close()
    assert listed == RemoteSecret(expected, None, None)
    assert requests_total(name, "list_path") >= 2  # 12 parameters, at most 10 a page


def test_parameter_store_path_listing_stops_past_the_key_limit(moto: Moto) -> None:
    """1,025 parameters under one path: refused (value-free) once the 1,025th arrives,
    after the pages 1,024 keys need, not after reading everything."""
    ssm = boto(moto, "ssm")
    base = f"/{unique('many')}"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(
            lambda i: ssm.put_parameter(Name=f"{base}/p{i:04d}", Value=f"value-{i}", Type="String"),
            range(MAX_PATH_KEYS + 1),
        ))  # fmt: skip
    provider, name = parameter_store(moto)
    try:
        with pytest.raises(Forbidden) as refused:
            provider.fetch(f"{base}/", version=None, namespace="shop", path_prefix=True)
        ssm.delete_parameter(Name=f"{base}/p0000")  # exactly the limit: read in full
        listed = provider.fetch(f"{base}/", version=None, namespace="shop", path_prefix=True)
    finally:
        provider.close()
    assert f"more than 1,024 parameters under path {base!r}" in str(refused.value)
    assert "value-" not in str(refused.value)
    assert listed.properties is not None and len(listed.properties) == MAX_PATH_KEYS
    pages = MAX_PATH_KEYS // PAGE_SIZE + 1
    assert requests_total(name, "list_path") <= 2 * pages


AMBIENT_AWS = (
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
"""Other links of the default chain, cleared so only the environment keys can count."""


def test_aws_default_credential_chain(
    moto: Moto, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = f"shop/{uuid.uuid4().hex}"
    boto(moto, "secretsmanager").create_secret(Name=key, SecretString="from-the-chain")
    config = AwsStore.model_validate(
        {"service": "SecretsManager", "region": REGION, "endpoint": moto.endpoint}
    )
    for variable in AMBIENT_AWS:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for variable, value in aws_env.items():
        monkeypatch.setenv(variable, value)
    with_env = SecretsManagerProvider(unique("sm-chain"), config, kube(Secrets()))
    try:
        assert with_env.fetch(key, version=None, namespace="shop").raw == b"from-the-chain"
    finally:
        with_env.close()

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    without = SecretsManagerProvider(unique("sm-chain"), config, kube(Secrets()))
    try:
        with pytest.raises(Forbidden, match="no usable AWS credentials"):
            without.fetch(key, version=None, namespace="shop")
    finally:
        without.close()


def test_aws_closed_port_is_unavailable_fast() -> None:
    config, store = aws_store(f"http://127.0.0.1:{free_port()}", "SecretsManager")
    provider = SecretsManagerProvider("sm-closed", config, kube(store))
    try:
        error, seconds = took(lambda: provider.fetch("shop/db", version=None, namespace="shop"))
    finally:
        provider.close()
    assert isinstance(error, BackendUnavailable)
    assert "cannot connect" in str(error)
    assert seconds < 10


@dataclass
class IamMoto:
    """A moto server that enforces IAM: the one place a wrong credential is refused."""

    endpoint: str
    user_key: tuple[str, str]
    role_arn: str
    secret: str


@pytest.fixture(scope="module")
def iam_moto(workdir: Path) -> Iterator[IamMoto]:
    port = free_port()
    proc = ServerProcess(
        "moto-iam",
        [tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        workdir / "moto-iam",
    ).start()
    endpoint = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: http_ok(f"{endpoint}/moto-api/data.json"), 60)
    try:
        setup = Moto(endpoint, proc)
        iam = boto(setup, "iam")
        iam.create_user(UserName="appinfra")
        key = iam.create_access_key(UserName="appinfra")["AccessKey"]
        statement = {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}
        iam.put_user_policy(
            UserName="appinfra",
            PolicyName="assume-only",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
        )
        trust = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
        role = iam.create_role(
            RoleName="secret-reader",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [trust]}),
        )["Role"]["Arn"]
        read = {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}
        iam.put_role_policy(
            RoleName="secret-reader",
            PolicyName="read",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [read]}),
        )
        boto(setup, "secretsmanager").create_secret(Name="shop/db", SecretString="via-role")
        # From here on every request must be signed by a known identity with permission.
        request = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth",
            data=b"0",
            headers={"Content-Type": "text/plain"},  # a form type would swallow the body
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):
            pass
        yield IamMoto(endpoint, (key["AccessKeyId"], key["SecretAccessKey"]), role, "shop/db")
    finally:
        proc.stop()


def iam_store(iam_moto: IamMoto, keys: tuple[str, str], **extra: Any) -> tuple[AwsStore, Secrets]:
    config, store = aws_store(iam_moto.endpoint, "SecretsManager", **extra)
    store.put("appinfra", "aws", "id", keys[0])
    store.put("appinfra", "aws", "secret", keys[1])
    return config, store


def test_aws_static_keys_without_permission_are_forbidden(iam_moto: IamMoto) -> None:
    config, store = iam_store(iam_moto, iam_moto.user_key)
    provider = SecretsManagerProvider(unique("sm-iam"), config, kube(store))
    try:
        with pytest.raises(Forbidden, match="access denied reading secret 'shop/db'"):
            provider.fetch(iam_moto.secret, version=None, namespace="shop")
    finally:
        provider.close()


def test_aws_role_is_assumed_and_reassumed_before_expiry(iam_moto: IamMoto) -> None:
    config, store = iam_store(iam_moto, iam_moto.user_key, roleArn=iam_moto.role_arn)
    clock = Clock()
    name = unique("sm-role")
    provider = SecretsManagerProvider(name, config, kube(store), clock)
    try:
        for _ in range(3):
            assert (
                provider.fetch(iam_moto.secret, version=None, namespace="shop").raw == b"via-role"
            )
        assert requests_total(name, "assume_role") == 1
        clock.now += 3600 - 299  # moto's sessions last an hour; renewed 5 minutes early
        provider.fetch(iam_moto.secret, version=None, namespace="shop")
    finally:
        provider.close()
    assert requests_total(name, "assume_role") == 2
    assert requests_total(name, "get_secret") == 4


def test_aws_keys_rotated_in_their_secret_are_picked_up_on_refusal(iam_moto: IamMoto) -> None:
    config, store = iam_store(
        iam_moto, ("AKIAUNKNOWN000000000", "wrong"), roleArn=iam_moto.role_arn
    )
    provider = SecretsManagerProvider(unique("sm-rotate"), config, kube(store))
    try:
        with pytest.raises(Forbidden):
            provider.fetch(iam_moto.secret, version=None, namespace="shop")
        store.put("appinfra", "aws", "id", iam_moto.user_key[0])
        store.put("appinfra", "aws", "secret", iam_moto.user_key[1])
        assert provider.fetch(iam_moto.secret, version=None, namespace="shop").raw == b"via-role"
    finally:
        provider.close()


def test_operator_syncs_a_binding_through_the_assumed_role(
    cluster: Cluster, operator: Operator, stores: Stores, iam_moto: IamMoto, namespace: str
) -> None:
    """`appinfra run` (the session operator, with the chart's RBAC) and a store with
    `aws.roleArn`, against a moto that enforces IAM: the store's keys may only call
    sts:AssumeRole, only the role may read the secret. The Secret appears only if the
    operator assumed the role; the same keys without roleArn are refused."""
    # Two more keys in the session's credential Secret, which the chart's RBAC already
    # lets the operator read (a new Secret might not be, if that RBAC names Secrets).
    user = {"iam-id": iam_moto.user_key[0], "iam-secret": iam_moto.user_key[1]}
    patch_credentials(cluster, user)
    ref = {"namespace": SYSTEM_NAMESPACE, "name": "aws-keys"}
    auth = {"secretRef": {**ref, "accessKeyIDKey": "iam-id", "secretAccessKeyKey": "iam-secret"}}
    aws = {"service": "SecretsManager", "region": REGION, "endpoint": iam_moto.endpoint}
    role_store, keys_store = unique("aws-role"), unique("aws-keys-only")
    configured = stores.config["secretStores"]
    scope = {"allowedNamespaces": [namespace], "keyPrefix": "shop/"}  # the moto secret's name
    configured[role_store] = {"aws": {**aws, "auth": auth, "roleArn": iam_moto.role_arn}, **scope}
    configured[keys_store] = {"aws": {**aws, "auth": auth}, **scope}
    stores.write()
    data = [{"secretKey": "PW", "remoteRef": {"key": iam_moto.secret}}]
    try:
        # The operator re-reads its configuration within a second or two; a binding
        # naming a store it does not know yet is Invalid and retried on the reload.
        apply(cluster, binding(namespace, "via-role", role_store, data))
        wait_condition(cluster, SB, namespace, "via-role", "Ready", "True", timeout=90)
        secret = get(cluster, "secret", namespace, "via-role")
        assert secret is not None
        assert base64.b64decode(secret["data"]["PW"]) == b"via-role"

        apply(cluster, binding(namespace, "keys-only", keys_store, data))
        sb = wait_condition(cluster, SB, namespace, "keys-only", "Synced", "False", "Forbidden")
        assert "access denied" in condition(sb, "Synced")["message"]
        assert get(cluster, "secret", namespace, "keys-only") is None
    finally:
        for store in (role_store, keys_store):
            configured.pop(store, None)
        stores.write()
        patch_credentials(cluster, dict.fromkeys(user))
    # The operator's own count agrees: one role session, shared by the binding's reads.
    assert operator_requests(operator, role_store, "assume_role") >= 1


def patch_credentials(cluster: Cluster, data: dict[str, str | None]) -> None:
    """Add (or, with None, remove) keys of the session's `aws-keys` Secret."""
    patch = {"stringData": data} if all(data.values()) else {"data": data}
    cluster.kubectl("-n", SYSTEM_NAMESPACE, "patch", "secret", "aws-keys", "--type=merge",
                    "-p", json.dumps(patch))  # fmt: skip


def binding(namespace: str, name: str, store: str, data: list[Any]) -> dict[str, Any]:
    return {"apiVersion": "appinfra.dev/v1alpha1", "kind": "SecretBinding",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"store": store, "data": data}}  # fmt: skip


def operator_requests(operator: Operator, store: str, operation: str) -> float:
    total = 0.0
    for line in operator.metrics().splitlines():
        if (
            line.startswith("appinfra_backend_requests_total{")
            and f'store="{store}"' in line
            and f'operation="{operation}"' in line
            and 'status="ok"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------- shared reads, no leaks


def concurrent_fetches(providers: Providers, store: str, keys: list[str], count: int) -> None:
    start = threading.Barrier(count)

    def fetch(number: int) -> RemoteSecret:
        start.wait()
        return providers.fetch(store, keys[number % len(keys)], version=None, namespace="shop")

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(fetch, range(count)))
    assert len({id(result) for result in results}) == len(keys)


def audited_reads(bao: Bao, paths: set[str]) -> int:
    entries = [json.loads(line) for line in (bao.home / "audit.log").read_text().splitlines()]
    return sum(
        1
        for entry in entries
        if entry["type"] == "response"
        and entry["request"]["operation"] == "read"
        and entry["request"]["path"] in paths
    )


def test_vault_50_concurrent_fetches_of_5_keys_are_5_requests(audited_bao: Bao) -> None:
    root = audited_bao.root()
    base = f"shop/{uuid.uuid4().hex}"
    keys = [f"{base}/k{number}" for number in range(5)]
    for key in keys:
        root.secrets.kv.v2.create_or_update_secret(path=key, secret={"key": key})
    store = Secrets()
    name = unique("vault-shared")
    config = OperatorConfig.model_validate(
        {
            "secretStores": {
                name: {
                    "vault": {
                        "address": audited_bao.address,
                        "auth": token_auth(store, audited_bao.root_token),
                    },
                    "allowedNamespaces": ["shop"],
                }
            }
        }
    )
    providers = Providers(config, kube(store))
    try:
        concurrent_fetches(providers, name, keys, 50)
    finally:
        providers.update(OperatorConfig())
    assert requests_total(name, "get_secret") == 5
    assert audited_reads(audited_bao, {f"secret/data/{key}" for key in keys}) == 5


def test_aws_50_concurrent_fetches_of_5_keys_are_5_requests(moto: Moto) -> None:
    sm = boto(moto, "secretsmanager")
    keys = [f"shop/{uuid.uuid4().hex}" for _ in range(5)]
    for key in keys:
        sm.create_secret(Name=key, SecretString=key)
    name = unique("sm-shared")
    config, store = aws_store(moto.endpoint, "SecretsManager")
    operator_config = OperatorConfig.model_validate(
        {
            "secretStores": {
                name: {"aws": config.model_dump(by_alias=True), "allowedNamespaces": ["shop"]}
            }
        }
    )
    providers = Providers(operator_config, kube(store))
    try:
        concurrent_fetches(providers, name, keys, 50)
    finally:
        providers.update(OperatorConfig())
    assert requests_total(name, "get_secret") == 5


def test_no_secret_value_reaches_logs_or_errors(
    moto: Moto, openbao: OpenBao, root: hvac.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """With every logger at DEBUG, as `--log-level debug` would set it."""
    values = [f"value-{uuid.uuid4().hex}" for _ in range(3)]
    base = f"shop/{uuid.uuid4().hex}"
    root.secrets.kv.v2.create_or_update_secret(path=base, secret={"pw": values[0]})
    boto(moto, "secretsmanager").create_secret(
        Name=base, SecretString=json.dumps({"pw": values[1]})
    )
    boto(moto, "ssm").put_parameter(Name=f"/{base}", Value=values[2], Type="SecureString")
    caplog.set_level(logging.DEBUG)  # after the setup above, which logs what it writes
    vault, _, _ = with_token(openbao, openbao.root_token)
    role = "arn:aws:iam::123456789012:role/any"  # moto without IAM checks: any role assumes
    sm, _ = secrets_manager(moto, roleArn=role)
    ssm, _ = parameter_store(moto)
    errors: list[str] = []
    try:
        read = [
            vault.fetch(base, version=None, namespace="shop"),
            sm.fetch(base, version=None, namespace="shop"),
            ssm.fetch(f"/{base}", version=None, namespace="shop"),
        ]
        missing: list[tuple[Provider, str]] = [(vault, f"{base}/x"), (sm, f"{base}/x")]
        for provider, key in [*missing, (ssm, f"/{base}/x")]:
            try:
                provider.fetch(key, version=None, namespace="shop")
            except SecretNotFound as exc:
                errors.append(str(exc))
    finally:
        for provider in (vault, sm, ssm):
            provider.close()
    assert [secret.version is not None for secret in read] == [True, True, True]
    assert len(errors) == 3
    assert caplog.records, "debug logging is on: some library must have logged something"
    text = caplog.text + "\n".join(errors) + "\n".join(map(repr, read))
    for value in values:
        assert value not in text
