"""AWS credentials against a moto that enforces IAM: static keys without
permission, an assumed role renewed before expiry, rotated keys, and the assumed
role through `appinfra run` (the session operator, with the chart's RBAC).

STS and Secrets Manager calls are counted at a forwarding proxy in front of that moto
(`iam_calls`); the provider's own metric is checked to agree.

Shared helpers: tests/support/providers.py."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appinfra.api.operatorconfig import AwsStore
from appinfra.providers import Forbidden
from appinfra.providers.aws import SecretsManagerProvider
from tests.e2e.conftest import SYSTEM_NAMESPACE, Operator, Stores
from tests.support.faultproxy import FaultProxy
from tests.support.kube import Cluster
from tests.support.moto import start_moto
from tests.support.objects import apply, condition, get, wait_condition
from tests.support.providers import (
    REGION,
    Clock,
    Secrets,
    aws_store,
    boto,
    kube,
    requests_total,
    unique,
)

SB = "secretbinding"


@dataclass
class IamMoto:
    """A moto server that enforces IAM: the one place a wrong credential is refused."""

    endpoint: str
    user_key: tuple[str, str]
    role_arn: str
    secret: str


@pytest.fixture(scope="module")
def iam_moto(workdir: Path) -> Iterator[IamMoto]:
    setup = start_moto(workdir / "moto-iam", "moto-iam")
    endpoint = setup.endpoint
    try:
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
        setup.process.stop()


@pytest.fixture
def iam_calls(iam_moto: IamMoto) -> Iterator[FaultProxy]:
    """A forwarding proxy in front of the IAM-enforcing moto, recording every call by
    operation and answer: where the tests count AssumeRole and GetSecretValue."""
    proxy = FaultProxy(iam_moto.endpoint).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def iam_store(endpoint: str, keys: tuple[str, str], **extra: Any) -> tuple[AwsStore, Secrets]:
    config, store = aws_store(endpoint, "SecretsManager", **extra)
    store.put("appinfra", "aws", "id", keys[0])
    store.put("appinfra", "aws", "secret", keys[1])
    return config, store


def test_aws_static_keys_without_permission_are_forbidden(iam_moto: IamMoto) -> None:
    config, store = iam_store(iam_moto.endpoint, iam_moto.user_key)
    provider = SecretsManagerProvider(unique("sm-iam"), config, kube(store))
    try:
        with pytest.raises(Forbidden, match="access denied reading secret 'shop/db'"):
            provider.fetch(iam_moto.secret, version=None, namespace="shop")
    finally:
        provider.close()


def test_aws_role_is_assumed_and_reassumed_before_expiry(
    iam_moto: IamMoto, iam_calls: FaultProxy
) -> None:
    config, store = iam_store(iam_calls.endpoint, iam_moto.user_key, roleArn=iam_moto.role_arn)
    clock = Clock()
    name = unique("sm-role")
    provider = SecretsManagerProvider(name, config, kube(store), clock)
    try:
        for _ in range(3):
            assert (
                provider.fetch(iam_moto.secret, version=None, namespace="shop").raw == b"via-role"
            )
        # At moto's door: one role session served the three reads.
        assert answered(iam_calls) == [("AssumeRole", 200)] + [("GetSecretValue", 200)] * 3
        assert requests_total(name, "assume_role") == 1  # the metric agrees
        clock.now += 3600 - 299  # moto's sessions last an hour; renewed 5 minutes early
        provider.fetch(iam_moto.secret, version=None, namespace="shop")
    finally:
        provider.close()
    # Within 5 minutes of its end the session was replaced before the fourth read.
    assert answered(iam_calls)[4:] == [("AssumeRole", 200), ("GetSecretValue", 200)]
    assert len(iam_calls.calls()) == 6
    assert requests_total(name, "assume_role") == 2  # the metric agrees
    assert requests_total(name, "get_secret") == 4


def answered(proxy: FaultProxy) -> list[tuple[str, int]]:
    """(operation, HTTP status) of every call through `proxy`, in order."""
    return [(call.operation, call.status) for call in proxy.calls()]


def test_aws_keys_rotated_in_their_secret_are_picked_up_on_refusal(iam_moto: IamMoto) -> None:
    config, store = iam_store(
        iam_moto.endpoint, ("AKIAUNKNOWN000000000", "wrong"), roleArn=iam_moto.role_arn
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
    cluster: Cluster,
    operator: Operator,
    stores: Stores,
    iam_moto: IamMoto,
    iam_calls: FaultProxy,
    namespace: str,
) -> None:
    """`appinfra run` (the session operator, with the chart's RBAC) and a store with
    `aws.roleArn`, against a moto that enforces IAM: the store's keys may only call
    sts:AssumeRole, only the role may read the secret. The Secret appears only if the
    operator assumed the role; the same keys without roleArn are refused. Each store
    reaches moto through a proxy of its own, which counts its calls."""
    # Two more keys in the session's credential Secret, which the chart's RBAC already
    # lets the operator read (a new Secret might not be, if that RBAC names Secrets).
    user = {"iam-id": iam_moto.user_key[0], "iam-secret": iam_moto.user_key[1]}
    patch_credentials(cluster, user)
    ref = {"namespace": SYSTEM_NAMESPACE, "name": "aws-keys"}
    auth = {"secretRef": {**ref, "accessKeyIDKey": "iam-id", "secretAccessKeyKey": "iam-secret"}}
    aws = {"service": "SecretsManager", "region": REGION}
    role_store, keys_store = unique("aws-role"), unique("aws-keys-only")
    keys_calls = FaultProxy(iam_moto.endpoint).start()
    configured = stores.config["secretStores"]
    scope = {"allowedNamespaces": [namespace], "keyPrefix": "shop/"}  # the moto secret's name
    configured[role_store] = {"aws": {**aws, "endpoint": iam_calls.endpoint, "auth": auth,
                                      "roleArn": iam_moto.role_arn}, **scope}  # fmt: skip
    configured[keys_store] = {"aws": {**aws, "endpoint": keys_calls.endpoint, "auth": auth},
                              **scope}  # fmt: skip
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
        keys_calls.stop()
    # At moto's door: the role store read the secret only after assuming the role (and
    # the role session was shared by its reads); the keys-only store never assumed it
    # and its reads were refused.
    role_calls = answered(iam_calls)
    assert role_calls[0] == ("AssumeRole", 200), role_calls
    assert ("GetSecretValue", 200) in role_calls, role_calls
    assert role_calls.count(("AssumeRole", 200)) == 1, role_calls
    refused = [(call.operation, call.error) for call in keys_calls.calls()]
    assert refused and set(refused) == {("GetSecretValue", "AccessDenied")}, refused
    # The operator's own count agrees.
    assert operator_requests(operator, role_store, "assume_role") == 1


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
