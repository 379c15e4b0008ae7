"""Reads shared between concurrent fetches of the same keys (counted where they
arrive: OpenBao's own audit device, a counting proxy in front of moto), and no secret
value in logs or errors at debug level.

Shared helpers: tests/support/providers.py."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import hvac
import pytest

from appinfra.api.operatorconfig import OperatorConfig
from appinfra.providers import Provider, Providers, RemoteSecret, SecretNotFound
from tests.e2e.conftest import OpenBao
from tests.support.audit import bao_requests
from tests.support.faultproxy import FaultProxy
from tests.support.moto import Moto
from tests.support.providers import (
    Secrets,
    aws_store,
    boto,
    kube,
    parameter_store,
    requests_total,
    secrets_manager,
    token_auth,
    unique,
    with_token,
)

# ---------------------------------------------------------------- shared reads, no leaks


def concurrent_fetches(providers: Providers, store: str, keys: list[str], count: int) -> None:
    start = threading.Barrier(count)

    def fetch(number: int) -> RemoteSecret:
        start.wait()
        return providers.fetch(store, keys[number % len(keys)], version=None, namespace="shop")

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(fetch, range(count)))
    assert len({id(result) for result in results}) == len(keys)


def test_vault_50_concurrent_fetches_of_5_keys_are_5_requests(
    openbao: OpenBao, root: hvac.Client
) -> None:
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
                        "address": openbao.address,
                        "auth": token_auth(store, openbao.root_token),
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
    # Each key read once, counted at OpenBao (the test's own writes left out).
    reads = bao_requests(openbao.audit_log, prefix=f"secret/data/{base}/", operation="read")
    assert Counter(read.path for read in reads) == {f"secret/data/{key}": 1 for key in keys}
    assert requests_total(name, "get_secret") == 5  # the metric agrees


def test_aws_50_concurrent_fetches_of_5_keys_are_5_requests(
    moto: Moto, aws_calls: FaultProxy
) -> None:
    sm = boto(moto, "secretsmanager")
    keys = [f"shop/{uuid.uuid4().hex}" for _ in range(5)]
    for key in keys:
        sm.create_secret(Name=key, SecretString=key)
    name = unique("sm-shared")
    config, store = aws_store(aws_calls.endpoint, "SecretsManager")
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
    # Counted at moto's door: five GetSecretValue calls, all answered.
    calls = aws_calls.calls()
    assert [(call.operation, call.status) for call in calls] == [("GetSecretValue", 200)] * 5
    assert requests_total(name, "get_secret") == 5  # the metric agrees


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
    sm, _ = secrets_manager(moto.endpoint, roleArn=role)
    ssm, _ = parameter_store(moto.endpoint)
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
