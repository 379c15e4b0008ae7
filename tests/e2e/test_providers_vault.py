"""The Vault provider against a real OpenBao: KV v1 and v2 reads, what counts as
missing or forbidden, and how an unreachable or untrusted server fails.

Shared helpers: tests/support/providers.py."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest

from appinfra.providers import BackendUnavailable, Forbidden, RemoteSecret, SecretNotFound
from appinfra.providers.vault import VaultProvider
from tests.e2e.conftest import OpenBao
from tests.support.audit import bao_requests
from tests.support.providers import (
    Bao,
    Secrets,
    kube,
    requests_total,
    start_bao,
    token_auth,
    took,
    unique,
    vault_store,
    with_token,
)
from tests.support.servers import free_port


@pytest.fixture(scope="module")
def tls_bao(workdir: Path) -> Iterator[Bao]:
    """OpenBao serving TLS with a certificate from its own, private CA."""
    home = workdir / "openbao-tls"
    (home / "certs").mkdir(parents=True, exist_ok=True)
    yield from start_bao(home, "-dev-tls", f"-dev-tls-cert-dir={home / 'certs'}", scheme="https")


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
    # One request each, counted at OpenBao (the test's own writes left out).
    reads = bao_requests(openbao.audit_log, f"secret/data/{key}", operation="read")
    assert [read.error for read in reads] == ["", ""]
    assert requests_total(name, "get_secret") == 2  # the metric agrees


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
