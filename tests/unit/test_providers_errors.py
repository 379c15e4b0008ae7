"""Error mapping, value hiding and configuration checks of the providers (no servers).

Library exceptions are built as the libraries build them (status/code and a text that
stands in for an echoed request body) to check what reaches our messages: the reason,
the store and key names, and never the library's text.
"""

from __future__ import annotations

from typing import Any

import hvac.exceptions
import pytest
import requests
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from prometheus_client import REGISTRY

from appinfra.api.operatorconfig import SecretStore
from appinfra.providers import (
    BackendUnavailable,
    Forbidden,
    Kube,
    ProviderError,
    RemoteSecret,
    SecretNotFound,
    build_provider,
)
from appinfra.providers.aws import property_name
from appinfra.providers.aws_session import aws_error
from appinfra.providers.base import call_backend
from appinfra.providers.vault import vault_error
from tests.unit.test_providers_shared import no_kube

LEAK = "hunter2-value-from-a-request-body"


@pytest.mark.parametrize(
    ("exc", "expected", "words"),
    [
        (requests.exceptions.ConnectionError(LEAK), BackendUnavailable, "cannot connect"),
        (requests.exceptions.ReadTimeout(LEAK), BackendUnavailable, "no answer within 5s"),
        (requests.exceptions.SSLError(LEAK), BackendUnavailable, "caBundle"),
        (hvac.exceptions.InvalidPath(LEAK, errors=[]), SecretNotFound, "nothing found"),
        (
            hvac.exceptions.InvalidPath(errors=[f"no handler for route '{LEAK}'"]),
            Forbidden,
            "kv.mount",
        ),
        (hvac.exceptions.Forbidden(LEAK, errors=["permission denied"]), Forbidden, "permission"),
        (hvac.exceptions.Unauthorized(LEAK), Forbidden, "permission denied"),
        (hvac.exceptions.InvalidRequest(LEAK), Forbidden, "HTTP 400"),
        (hvac.exceptions.VaultDown(LEAK, errors=["Vault is sealed"]), BackendUnavailable, "sealed"),
        (hvac.exceptions.InternalServerError(LEAK), BackendUnavailable, "HTTP 500"),
        (hvac.exceptions.RateLimitExceeded(LEAK), BackendUnavailable, "HTTP 429"),
        (hvac.exceptions.UnexpectedError(LEAK), BackendUnavailable, "unexpected"),
    ],
)
def test_vault_errors(exc: Exception, expected: type[ProviderError], words: str) -> None:
    error = vault_error(exc, "vault-main", "reading secret/data/shop/db")
    assert type(error) is expected
    message = str(error)
    assert words in message
    assert "vault-main" in message
    assert "secret/data/shop/db" in message
    assert LEAK not in message


def client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": LEAK},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetSecretValue")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (client_error("ResourceNotFoundException", 400), SecretNotFound),
        (client_error("ParameterNotFound", 400), SecretNotFound),
        (client_error("ParameterVersionNotFound", 400), SecretNotFound),
        (client_error("AccessDeniedException", 400), Forbidden),
        (client_error("AccessDenied", 403), Forbidden),
        (client_error("UnrecognizedClientException", 400), Forbidden),
        (client_error("InvalidSignatureException", 400), Forbidden),
        (client_error("InvalidClientTokenId", 403), Forbidden),
        (client_error("ThrottlingException", 400), BackendUnavailable),
        (client_error("Throttling", 400), BackendUnavailable),
        (client_error("TooManyRequestsException", 400), BackendUnavailable),
        (client_error("InternalServiceError", 500), BackendUnavailable),
        (client_error("SomethingNew", 503), BackendUnavailable),
        (client_error("DecryptionFailure", 400), Forbidden),
        (client_error("403", 403), Forbidden),
        (EndpointConnectionError(endpoint_url=f"http://x/{LEAK}"), BackendUnavailable),
        (ConnectTimeoutError(endpoint_url=f"http://x/{LEAK}"), BackendUnavailable),
        (ReadTimeoutError(endpoint_url=f"http://x/{LEAK}"), BackendUnavailable),
        (NoCredentialsError(), Forbidden),
        (ParamValidationError(report=LEAK), Forbidden),
    ],
)
def test_aws_errors(exc: Exception, expected: type[ProviderError]) -> None:
    error = aws_error(exc, "aws-main", "reading secret 'shop/db'")
    assert type(error) is expected
    assert "aws-main" in str(error)
    assert "'shop/db'" in str(error)
    assert LEAK not in str(error)


def test_aws_error_code_is_shown_only_when_it_looks_like_one() -> None:
    assert "(AccessDeniedException)" in str(
        aws_error(client_error("AccessDeniedException", 400), "s", "x")
    )
    odd = aws_error(client_error(f"Bad {LEAK}", 400), "s", "x")
    assert LEAK not in str(odd)
    assert "HTTP 400" in str(odd)


def requests_total(store: str, operation: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "appinfra_backend_requests_total",
        {"store": store, "operation": operation, "status": status},
    )
    return value or 0.0


def to_error(exc: Exception) -> ProviderError:
    return vault_error(exc, "unit-store", "reading x")


def test_call_backend_counts_and_drops_the_library_exception() -> None:
    def fails() -> None:
        raise hvac.exceptions.Forbidden(LEAK)

    before = requests_total("unit-store", "get_secret", "Forbidden")
    with pytest.raises(Forbidden) as raised:
        call_backend(
            "unit-store",
            "get_secret",
            fails,
            (hvac.exceptions.VaultError,),
            to_error,
        )
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None
    assert requests_total("unit-store", "get_secret", "Forbidden") == before + 1

    ok_before = requests_total("unit-store", "get_secret", "ok")
    assert call_backend("unit-store", "get_secret", lambda: 7, (Exception,), to_error) == 7
    assert requests_total("unit-store", "get_secret", "ok") == ok_before + 1


def test_call_backend_lets_our_own_bugs_through() -> None:
    def broken() -> None:
        raise KeyError("auth")

    with pytest.raises(KeyError):
        call_backend("unit-store", "login", broken, (hvac.exceptions.VaultError,), to_error)


def test_remote_secret_repr_shows_no_values() -> None:
    secret = RemoteSecret({"password": LEAK, "nested": {"x": LEAK}}, LEAK.encode(), "7")
    for text in (repr(secret), str(secret), f"{secret}", repr([secret])):
        assert LEAK not in text
        assert "password" in text
        assert "'7'" in text
    assert "None" in repr(RemoteSecret(None, None, None))


@pytest.mark.parametrize(
    ("path", "name", "key"),
    [
        ("/shop/app", "/shop/app/db_password", "db_password"),
        ("/shop/app/", "/shop/app/db/password", "db_password"),
        ("/shop/app", "/shop/app/a/b/c.d-e", "a_b_c.d-e"),
        ("/", "/top", "top"),
    ],
)
def test_parameter_names_become_secret_keys(path: str, name: str, key: str) -> None:
    assert property_name(path, name) == key


def vault_store(**vault: object) -> SecretStore:
    return SecretStore.model_validate(
        {
            "vault": {
                "address": "http://127.0.0.1:9",
                "auth": {"token": {"secretRef": {"namespace": "a", "name": "t", "key": "t"}}},
                **vault,
            },
            "allowedNamespaces": ["*"],
        }
    )


def test_vault_refuses_what_the_engine_cannot_answer_without_asking() -> None:
    v2 = build_provider("unit-vault", vault_store(), no_kube)
    v1 = build_provider("unit-vault", vault_store(kv={"mount": "kv", "version": 1}), no_kube)
    try:
        with pytest.raises(Forbidden, match="path prefix"):
            v2.fetch("a/", version=None, namespace="a", path_prefix=True)
        with pytest.raises(Forbidden, match="no versions"):
            v1.fetch("a/db", version="2", namespace="a")
        with pytest.raises(Forbidden, match="must be a number"):
            v2.fetch("a/db", version="AWSCURRENT", namespace="a")
    finally:
        v1.close()
        v2.close()


def assert_validate(name: str, store: SecretStore, problem: str | None) -> None:
    """The store's provider validates clean (problem None) or names `problem`."""
    provider = build_provider(name, store, no_kube)
    try:
        problems = provider.validate()
    finally:
        provider.close()
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("vault", "problem"),
    [
        ({}, None),
        ({"caBundle": "not a certificate"}, "not a PEM bundle"),
        ({"address": "http://vault:8200", "caBundle": "x"}, "uses http://"),
        ({"address": "https://:8200"}, "has no host"),
    ],
)
def test_vault_validate(vault: dict[str, object], problem: str | None) -> None:
    assert_validate("unit-vault", vault_store(**vault), problem)


@pytest.mark.parametrize(
    ("aws", "prefix", "problem"),
    [
        ({"service": "SecretsManager", "region": "eu-west-1"}, "{namespace}/", None),
        ({"service": "ParameterStore", "region": "us-gov-west-1"}, "/{namespace}/", None),
        ({"service": "SecretsManager", "region": "Ireland"}, "{namespace}/", "region"),
        (
            {"service": "SecretsManager", "region": "eu-west-1", "endpoint": "localhost:4566"},
            "{namespace}/",
            "endpoint",
        ),
        ({"service": "ParameterStore", "region": "eu-west-1"}, "{namespace}/", "start with '/'"),
    ],
)
def test_aws_validate(aws: dict[str, object], prefix: str, problem: str | None) -> None:
    store = SecretStore.model_validate(
        {"aws": aws, "allowedNamespaces": ["*"], "keyPrefix": prefix}
    )
    assert_validate("unit-aws", store, problem)


def test_missing_credentials_are_forbidden_not_a_missing_secret() -> None:
    """Never "the remote secret is gone": that can delete a target Secret (deletionPolicy)."""

    def missing(namespace: str, name: str, *_: object) -> str:
        raise SecretNotFound(f"Secret {namespace}/{name} not found")

    kube = Kube(token_for=missing, read_secret_key=missing)
    stores = [
        vault_store(),
        vault_store(auth={"kubernetes": {"role": "r"}}),
        vault_store(
            auth={
                "appRole": {
                    "roleId": "id",
                    "secretRef": {"namespace": "a", "name": "t", "key": "t"},
                }
            }
        ),
        SecretStore.model_validate(
            {
                "aws": {
                    "service": "ParameterStore",
                    "region": "eu-west-1",
                    "endpoint": "http://127.0.0.1:9",
                    "auth": {
                        "secretRef": {
                            "namespace": "a",
                            "name": "aws",
                            "accessKeyIDKey": "id",
                            "secretAccessKeyKey": "key",
                        }
                    },
                },
                "allowedNamespaces": ["*"],
            }
        ),
    ]
    for number, store in enumerate(stores):
        provider = build_provider(f"unit-creds-{number}", store, kube)
        try:
            with pytest.raises(Forbidden, match="credentials are missing: Secret a/"):
                provider.fetch("a/db", version=None, namespace="a")
        finally:
            provider.close()
