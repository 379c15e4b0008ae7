"""Helpers for the provider tests (tests/e2e/test_providers_*.py): providers built
straight from a store configuration, against the real OpenBao and moto servers.

Kubernetes Secrets holding credentials are stood in for by a dict behind the same
`Kube.read_secret_key` callable the operator passes (`Secrets`); every provider gets
its own store name (`unique`), so the operator's own backend request counter a test
reads (`requests_total`) counts its own requests only. That metric is a feature
(users alert on it), so tests check that it agrees with the servers; the count a
claim rests on is taken at the server: OpenBao's audit device
(tests/support/audit.py `bao_requests`), or for AWS a forwarding proxy in front of
moto (the `aws_calls` fixture, tests/support/faultproxy.py).
"""

from __future__ import annotations

import secrets
import socket
import ssl
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import hvac
from prometheus_client import REGISTRY

from appinfra.api.operatorconfig import AwsStore, VaultStore
from appinfra.providers import Kube, SecretNotFound
from appinfra.providers.aws import ParameterStoreProvider, SecretsManagerProvider
from appinfra.providers.vault import VaultProvider
from tests.e2e.conftest import OpenBao
from tests.support.clock import Clock as FakeClock
from tests.support.moto import Moto
from tests.support.servers import ServerProcess, free_port, http_ok, tool

REGION = "eu-west-1"


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
    """A private OpenBao, for what the session's one cannot be (TLS with its own CA)."""

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


def vault_store(address: str, auth: dict[str, Any], **extra: Any) -> VaultStore:
    return VaultStore.model_validate({"address": address, "auth": auth, **extra})


def token_auth(secrets_: Secrets, token: str) -> dict[str, Any]:
    secrets_.put("appinfra", "vault-token", "token", token)
    return {
        "token": {"secretRef": {"namespace": "appinfra", "name": "vault-token", "key": "token"}}
    }


def with_token(openbao: OpenBao, token: str, **extra: Any) -> tuple[VaultProvider, Secrets, str]:
    name = unique("vault")
    store = Secrets()
    provider = VaultProvider(
        name, vault_store(openbao.address, token_auth(store, token), **extra), kube(store)
    )
    return provider, store, name


class Clock(FakeClock):
    """A fake clock that starts at the real monotonic time."""

    def __init__(self) -> None:
        super().__init__(time.monotonic())


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


def secrets_manager(endpoint: str, **extra: Any) -> tuple[SecretsManagerProvider, str]:
    """A Secrets Manager provider of its own store name, for moto at `endpoint` (or the
    counting proxy in front of it)."""
    name = unique("sm")
    config, store = aws_store(endpoint, "SecretsManager", **extra)
    return SecretsManagerProvider(name, config, kube(store)), name


def parameter_store(endpoint: str) -> tuple[ParameterStoreProvider, str]:
    name = unique("ssm")
    config, store = aws_store(endpoint, "ParameterStore")
    return ParameterStoreProvider(name, config, kube(store), "/{namespace}/"), name
