"""Reads shared between concurrent fetches of the same keys (counted by OpenBao's
own audit device), and no secret value in logs or errors at debug level.

Shared helpers: tests/support/providers.py."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hvac
import pytest

from appinfra.api.operatorconfig import OperatorConfig
from appinfra.providers import Provider, Providers, RemoteSecret, SecretNotFound
from tests.e2e.conftest import OpenBao
from tests.support.moto import Moto
from tests.support.providers import (
    Bao,
    Secrets,
    aws_store,
    boto,
    kube,
    parameter_store,
    requests_total,
    secrets_manager,
    start_bao,
    token_auth,
    unique,
    with_token,
)


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
