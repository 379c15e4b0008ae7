"""The AWS providers against moto over HTTP: Secrets Manager and SSM Parameter
Store values, versions, path listings and their bounds, the default credential
chain, an unreachable endpoint. Calls are counted at a proxy in front of moto
(`aws_calls`); the provider's own metric is checked to agree.

Shared helpers: tests/support/providers.py."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from appinfra.api.operatorconfig import AwsStore
from appinfra.providers import BackendUnavailable, Forbidden, RemoteSecret, SecretNotFound
from appinfra.providers.aws import MAX_PATH_KEYS, PAGE_SIZE, SecretsManagerProvider
from tests.support.faultproxy import FaultProxy
from tests.support.moto import Moto
from tests.support.providers import (
    REGION,
    Secrets,
    aws_store,
    boto,
    kube,
    parameter_store,
    requests_total,
    secrets_manager,
    took,
    unique,
)
from tests.support.servers import free_port

# ---------------------------------------------------------------- AWS


def test_secrets_manager_json_plain_and_binary(moto: Moto, aws_calls: FaultProxy) -> None:
    sm = boto(moto, "secretsmanager")
    base = f"shop/{uuid.uuid4().hex}"
    document = json.dumps({"password": "pw", "port": 5432})
    created = sm.create_secret(Name=f"{base}/json", SecretString=document)
    sm.create_secret(Name=f"{base}/plain", SecretString="just-a-token")
    sm.create_secret(Name=f"{base}/binary", SecretBinary=b"\x00\xffbin")
    provider, name = secrets_manager(aws_calls.endpoint)
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
    # One call each at moto's door.
    assert [(c.operation, c.status) for c in aws_calls.calls()] == [("GetSecretValue", 200)] * 3
    assert requests_total(name, "get_secret") == 3  # the metric agrees


def test_secrets_manager_versions_by_stage_and_id(moto: Moto) -> None:
    sm = boto(moto, "secretsmanager")
    key = f"shop/{uuid.uuid4().hex}"
    first = sm.create_secret(Name=key, SecretString="one")["VersionId"]
    second = sm.put_secret_value(SecretId=key, SecretString="two")["VersionId"]
    provider, _ = secrets_manager(moto.endpoint)
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


def test_parameter_store_values_and_versions(moto: Moto, aws_calls: FaultProxy) -> None:
    ssm = boto(moto, "ssm")
    base = f"/shop/{uuid.uuid4().hex}"
    ssm.put_parameter(Name=f"{base}/plain", Value="v1", Type="String")
    ssm.put_parameter(Name=f"{base}/plain", Value="v2", Type="String", Overwrite=True)
    ssm.put_parameter(Name=f"{base}/secure", Value="decrypted!", Type="SecureString")
    provider, name = parameter_store(aws_calls.endpoint)
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
    # One call each at moto's door, the last two refused as not found.
    assert [(c.operation, c.error) for c in aws_calls.calls()] == [
        ("GetParameter", ""),
        ("GetParameter", ""),
        ("GetParameter", ""),
        ("GetParameter", "ParameterNotFound"),
        ("GetParameter", "ParameterVersionNotFound"),
    ]
    assert requests_total(name, "get_secret") == 3  # the metric agrees
    assert requests_total(name, "get_secret", "SecretNotFound") == 2


def test_parameter_store_path_listing(moto: Moto, aws_calls: FaultProxy) -> None:
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
    provider, name = parameter_store(aws_calls.endpoint)
    try:
        listed = provider.fetch(f"{base}/app/", version=None, namespace="shop", path_prefix=True)
        pages = aws_calls.calls()
        with pytest.raises(SecretNotFound):
            provider.fetch(f"{base}/nothing/", version=None, namespace="shop", path_prefix=True)
        with pytest.raises(Forbidden, match="no versions"):
            provider.fetch(f"{base}/app/", version="2", namespace="shop", path_prefix=True)
    finally:
        provider.close()
    assert listed == RemoteSecret(expected, None, None)
    # At moto's door: 12 parameters, at most 10 a page, so at least two pages; then one
    # call for the empty path, none for the refused version.
    assert len(pages) >= 2
    assert [(c.operation, c.status) for c in pages] == [("GetParametersByPath", 200)] * len(pages)
    assert len(aws_calls.calls("GetParametersByPath")) == len(pages) + 1
    assert len(aws_calls.calls()) == len(pages) + 1
    assert requests_total(name, "list_path") == len(pages) + 1  # the metric agrees


def test_parameter_store_path_listing_stops_past_the_key_limit(
    moto: Moto, aws_calls: FaultProxy
) -> None:
    """1,025 parameters under one path: refused (value-free) once the 1,025th arrives,
    after the pages 1,024 keys need, not after reading everything."""
    ssm = boto(moto, "ssm")
    base = f"/{unique('many')}"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(
            lambda i: ssm.put_parameter(Name=f"{base}/p{i:04d}", Value=f"value-{i}", Type="String"),
            range(MAX_PATH_KEYS + 1),
        ))  # fmt: skip
    provider, name = parameter_store(aws_calls.endpoint)
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
    # Both fetches together, counted at moto's door (the test's own writes go straight to
    # moto, not through it).
    calls = aws_calls.calls()
    assert {call.operation for call in calls} == {"GetParametersByPath"}
    assert len(calls) <= 2 * pages
    assert requests_total(name, "list_path") == len(calls)  # the metric agrees


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
