"""The Vault provider's authentication against a real OpenBao: tokens, AppRole,
renewal near expiry, and kubernetes auth through our API server's TokenReview.

Logins, renewals and reads are counted where they happen, in the session OpenBao's
audit log (`bao_requests`); the provider's own metric (`requests_total`) is checked
to agree with it.

Shared helpers: tests/support/providers.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import pytest
from kubernetes import client

from appinfra.providers import Forbidden, RemoteSecret
from appinfra.providers.vault import VaultProvider
from tests.e2e.conftest import OpenBao
from tests.support.audit import bao_requests
from tests.support.kube import Cluster
from tests.support.openbao import enable_kubernetes_auth
from tests.support.providers import (
    Clock,
    Secrets,
    kube,
    requests_total,
    unique,
    vault_store,
    with_token,
)

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
    # The cached token was refused, so the token was re-read once and the read retried:
    # OpenBao refused two reads of the denied key, and served one of the allowed key.
    reads = bao_requests(openbao.audit_log, prefix=f"secret/data/{base}/", operation="read")
    assert [(r.path.rsplit("/", 1)[1], r.denied) for r in reads] == [
        ("allowed", False),
        ("denied", True),
        ("denied", True),
    ]
    assert requests_total(name, "get_secret", "Forbidden") == 2  # the metric agrees
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
    policy: str  # its own: OpenBao's audit log names it on every request of its tokens


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
    return AppRole(mount, role_id, secret_id, base, policy)


def answered_for(audit_log: Path, role: AppRole) -> list[str]:
    """What OpenBao answered for `role`, in order: "login" (or "refused login") at its
    mount, "renew" of a token with its policy, "read k0" (or "denied k0") of its keys."""
    out = []
    for request in bao_requests(audit_log):
        if request.path == f"auth/{role.mount}/login":
            out.append("refused login" if request.error else "login")
        elif request.path == "auth/token/renew-self" and role.policy in request.policies:
            out.append("renew")
        elif request.path.startswith(f"secret/data/{role.base}/") and request.operation == "read":
            key = request.path.rsplit("/", 1)[1]
            out.append(f"denied {key}" if request.denied else f"read {key}")
    return out


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
    # At OpenBao: one login for the first three reads; the revoked token refused once.
    assert answered_for(openbao.audit_log, role) == [
        "login", "read k0", "read k1", "read k0", "denied k1", "login", "read k1",
    ]  # fmt: skip
    # The metric agrees.
    assert requests_total(name, "login") == 2
    assert requests_total(name, "get_secret") == 4
    assert requests_total(name, "get_secret", "Forbidden") == 1


def test_vault_token_near_expiry_is_renewed_or_replaced(
    openbao: OpenBao, root: hvac.Client
) -> None:
    renewable = make_app_role(root, token_ttl="30s", token_max_ttl="1h")
    batch = make_app_role(root, token_ttl="30s", token_type="batch")  # batch: not renewable
    expected = {
        renewable.mount: ["login", "read k0", "renew", "read k1"],
        batch.mount: ["login", "read k0", "login", "read k1"],
    }
    for role, renewals, logins in [(renewable, 1, 1), (batch, 0, 2)]:
        clock = Clock()
        provider, name = app_role_provider(openbao, role, clock)
        try:
            provider.fetch(f"{role.base}/k0", version=None, namespace="shop")
            clock.now += 25  # within the margin before the 30 s lease ends
            provider.fetch(f"{role.base}/k1", version=None, namespace="shop")
        finally:
            provider.close()
        # At OpenBao: the second read came after a renewal of the same token, or (batch
        # tokens cannot be renewed) after a new login.
        assert answered_for(openbao.audit_log, role) == expected[role.mount]
        assert requests_total(name, "renew") == renewals  # the metric agrees
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
        # At OpenBao: one login (accepted) served both reads of the namespace; the other
        # namespace's login was refused and nothing was read for it.
        logins = bao_requests(openbao.audit_log, f"auth/{mount}/login")
        assert [bool(login.error) for login in logins] == [False, True]
        reads = bao_requests(openbao.audit_log, f"secret/data/{namespace}/db", operation="read")
        assert [read.error for read in reads] == ["", ""]
        assert requests_total(name, "login") == 1  # the metric agrees
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
