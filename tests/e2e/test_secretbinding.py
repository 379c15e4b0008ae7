"""SecretBinding end to end: real OpenBao and moto behind a real `appinfra run`,
observed through the API server like a user would."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import CANARY, Operator, Stores
from tests.support.audit import bao_reads, bao_requests
from tests.support.kube import Cluster
from tests.support.objects import (
    apply,
    condition,
    deployment,
    events_for,
    get,
    spec_and_our_writes,
    wait_condition,
    wait_gone,
)
from tests.support.servers import wait_until
from tests.support.tcpproxy import TcpProxy

SB = "secretbinding"


def binding(namespace: str, name: str, store: str = "vault-main", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": "SecretBinding",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"store": store, **spec},
    }


def secret_data(cluster: Cluster, namespace: str, name: str) -> dict[str, str] | None:
    secret = get(cluster, "secret", namespace, name)
    if secret is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def put(stores: Stores, path: str, data: dict[str, Any], mount: str = "secret") -> None:
    if mount == "kv1":
        stores.bao.secrets.kv.v1.create_or_update_secret(path=path, secret=data, mount_point=mount)
    else:
        stores.bao.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point=mount)


def backend_requests(operator: Operator, store: str) -> float:
    """The operator's own count of its calls to `store` (appinfra_backend_requests_total,
    every operation and status): asserted only to agree with a count at the server."""
    total = 0.0
    for line in operator.metrics().splitlines():
        if line.startswith("appinfra_backend_requests_total{") and f'store="{store}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_kv2_sync_with_property_extract_template_and_status(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    put(stores, f"{namespace}/db", {"password": "pw1", "nested": {"user": "app"}})
    put(stores, f"{namespace}/api", {"API_KEY": "k1", "API_URL": "https://api"})
    db = f"{namespace}/db"
    spec = {
        "data": [
            {"secretKey": "DB_PASSWORD", "remoteRef": {"key": db, "property": "password"}},
            {"secretKey": "DB_USER", "remoteRef": {"key": db, "property": "nested.user"}},
        ],
        "dataFrom": [{"extract": {"key": f"{namespace}/api"}}],
        "target": {
            "name": "payments-db",
            "type": "Opaque",
            "template": {"data": {"DSN": "postgresql://{{ DB_USER }}:{{ DB_PASSWORD }}@db/shop"},
                         "labels": {"tier": "db"}},
        },
    }  # fmt: skip
    apply(cluster, binding(namespace, "db", **spec))
    sb = wait_condition(cluster, SB, namespace, "db", "Ready", "True")
    assert condition(sb, "Synced")["reason"] == "Synced"
    assert secret_data(cluster, namespace, "payments-db") == {
        "DB_PASSWORD": "pw1",
        "DB_USER": "app",
        "API_KEY": "k1",
        "API_URL": "https://api",
        "DSN": "postgresql://app:pw1@db/shop",
    }
    secret = get(cluster, "secret", namespace, "payments-db")
    assert secret["metadata"]["labels"]["tier"] == "db"  # type: ignore[index]
    refs = secret["metadata"]["ownerReferences"]  # type: ignore[index]
    assert refs[0]["kind"] == "SecretBinding" and refs[0]["controller"]
    status = sb["status"]
    assert status["syncedKeys"] == ["API_KEY", "API_URL", "DB_PASSWORD", "DB_USER", "DSN"]
    assert len(status["secretHMAC"]) == 64
    assert status["targetSecret"] == "payments-db"
    assert status["lastSyncTime"] and status["nextSyncTime"]
    table = cluster.kubectl("-n", namespace, "get", SB).stdout
    assert "vault-main" in table and "payments-db" in table
    assert "Synced" in {e["reason"] for e in events_for(cluster, namespace, "db")}


@pytest.mark.parametrize("store", ["vault-kv1", "vault-approle", "vault-k8s"])
def test_kv1_approle_and_kubernetes_auth(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str, store: str
) -> None:
    put(stores, f"{namespace}/app", {"token": f"t-{store}"},
        mount="kv1" if store == "vault-kv1" else "secret")  # fmt: skip
    data = [{"secretKey": "TOKEN", "remoteRef": {"key": f"{namespace}/app", "property": "token"}}]
    apply(cluster, binding(namespace, "app", store, data=data))
    wait_condition(cluster, SB, namespace, "app", "Ready", "True")
    assert secret_data(cluster, namespace, "app") == {"TOKEN": f"t-{store}"}


def test_aws_secrets_manager_and_parameter_store(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    kwargs = {"endpoint_url": stores.moto.endpoint, "region_name": "eu-west-1",
              "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # fmt: skip
    boto3.client("secretsmanager", **kwargs).create_secret(
        Name=f"{namespace}/payments", SecretString=json.dumps({"password": "sm-pw"})
    )
    ssm = boto3.client("ssm", **kwargs)
    ssm.put_parameter(Name=f"/{namespace}/token", Value="ssm-token", Type="SecureString")
    ssm.put_parameter(Name=f"/{namespace}/cfg/a", Value="1", Type="String")
    ssm.put_parameter(Name=f"/{namespace}/cfg/b", Value="2", Type="SecureString")
    sm_data = [
        {"secretKey": "PW", "remoteRef": {"key": f"{namespace}/payments", "property": "password"}}
    ]
    apply(cluster, binding(namespace, "sm", "aws-sm", data=sm_data))
    ssm_spec = {
        "data": [{"secretKey": "TOKEN", "remoteRef": {"key": f"/{namespace}/token"}}],
        "dataFrom": [{"extract": {"key": f"/{namespace}/cfg/"}}],
    }  # fmt: skip
    apply(cluster, binding(namespace, "ssm", "aws-ssm", **ssm_spec))
    wait_condition(cluster, SB, namespace, "sm", "Ready", "True")
    wait_condition(cluster, SB, namespace, "ssm", "Ready", "True")
    assert secret_data(cluster, namespace, "sm") == {"PW": "sm-pw"}
    assert secret_data(cluster, namespace, "ssm") == {"TOKEN": "ssm-token", "a": "1", "b": "2"}


def test_rotation_rolls_out_and_unchanged_value_writes_nothing(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    put(stores, f"{namespace}/rot", {"password": "v1"})
    apply(cluster, deployment(namespace, "consumer"))
    data = [{"secretKey": "PW", "remoteRef": {"key": f"{namespace}/rot", "property": "password"}}]
    spec = {"data": data, "refreshInterval": "10s",
            "targetRef": {"kind": "Deployment", "name": "consumer"}}  # fmt: skip
    apply(cluster, binding(namespace, "rot", **spec))
    sb = wait_condition(cluster, SB, namespace, "rot", "Ready", "True")
    first_hmac = sb["status"]["secretHMAC"]

    def pod_hash() -> str:
        dep = get(cluster, "deployment", namespace, "consumer")
        return str(
            dep["spec"]["template"]["metadata"]
            .get("annotations", {})
            .get(  # type: ignore[index]
                "appinfra.dev/secret-hash"
            )
        )

    assert pod_hash() == first_hmac
    assert "v1" not in pod_hash()

    # Several refreshes with the same value: the Secret and the Deployment stay untouched.
    secret_rv = get(cluster, "secret", namespace, "rot")["metadata"]["resourceVersion"]  # type: ignore[index]
    dep_before = spec_and_our_writes(get(cluster, "deployment", namespace, "consumer"))
    last = sb["status"]["lastSyncTime"]
    wait_until(
        lambda: get(cluster, SB, namespace, "rot")["status"]["lastSyncTime"] != last,  # type: ignore[index]
        30,
        "another refresh",
    )
    time.sleep(3)
    assert get(cluster, "secret", namespace, "rot")["metadata"]["resourceVersion"] == secret_rv  # type: ignore[index]
    dep = get(cluster, "deployment", namespace, "consumer")
    assert spec_and_our_writes(dep) == dep_before

    # Rotate: the Secret follows and the consumer rolls out a new ReplicaSet.
    put(stores, f"{namespace}/rot", {"password": "v2"})
    wait_until(lambda: secret_data(cluster, namespace, "rot") == {"PW": "v2"}, 30, "rotation")
    wait_until(lambda: pod_hash() != first_hmac, 30, "a new secret-hash on the pod template")

    def replicasets() -> int:
        items = cluster.kubectl_json("-n", namespace, "get", "rs")["items"]
        return len(items)

    wait_until(lambda: replicasets() >= 2, 60, "a new ReplicaSet for the rotated secret")


def test_forbidden_namespace_or_prefix_makes_no_backend_call(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    """Counted at OpenBao (its audit device logs every request's path), not by the
    operator's own metrics: a check that runs after the read it should prevent would
    still count nothing if the count lived in the same code."""
    guarded = f"{namespace}/x"  # the store allows no t-* namespace at all
    outside = f"other-{namespace}/db"  # outside this namespace's key prefix
    allowed = f"{namespace}/ok"
    for key in (guarded, outside, allowed):
        put(stores, key, {"v": "1"})  # they exist: a read would succeed
    data = [{"secretKey": "X", "remoteRef": {"key": guarded}}]
    apply(cluster, binding(namespace, "guarded", "vault-guarded", data=data))
    sb = wait_condition(cluster, SB, namespace, "guarded", "Synced", "False", "Forbidden")
    assert namespace in condition(sb, "Synced")["message"]
    data = [{"secretKey": "X", "remoteRef": {"key": outside}}]
    apply(cluster, binding(namespace, "prefix", "vault-shared", data=data))
    sb = wait_condition(cluster, SB, namespace, "prefix", "Synced", "False", "Forbidden")
    assert f"{namespace}/" in condition(sb, "Synced")["message"]
    # The control: an allowed read through the same OpenBao is in the audit log.
    data = [{"secretKey": "X", "remoteRef": {"key": allowed}}]
    apply(cluster, binding(namespace, "allowed", "vault-shared", data=data))
    wait_condition(cluster, SB, namespace, "allowed", "Ready", "True")
    time.sleep(2)  # time for a (wrong) late read of the refused keys
    reads = bao_reads(stores.bao_audit_log)
    assert f"secret/data/{allowed}" in reads
    assert f"secret/data/{guarded}" not in reads
    assert f"secret/data/{outside}" not in reads
    assert get(cluster, "secret", namespace, "guarded") is None
    assert get(cluster, "secret", namespace, "prefix") is None


def test_unknown_store_lists_the_configured_ones(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    data = [{"secretKey": "X", "remoteRef": {"key": f"{namespace}/x"}}]
    apply(cluster, binding(namespace, "nowhere", "vault-typo", data=data))
    sb = wait_condition(cluster, SB, namespace, "nowhere", "Accepted", "False", "Invalid")
    message = condition(sb, "Accepted")["message"]
    assert "vault-typo" in message and "vault-main" in message and "aws-sm" in message


def test_creation_policies(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    put(stores, f"{namespace}/cp", {"password": "cp"})
    data = [{"secretKey": "PW", "remoteRef": {"key": f"{namespace}/cp", "property": "password"}}]
    existing = {"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "shared", "namespace": namespace},
                "stringData": {"OTHER": "keep-me"}}  # fmt: skip
    apply(cluster, existing)
    apply(cluster, binding(namespace, "owner", data=data, target={"name": "shared"}))
    sb = wait_condition(cluster, SB, namespace, "owner", "Accepted", "False", "Conflicted")
    assert "Merge" in condition(sb, "Accepted")["message"]
    assert secret_data(cluster, namespace, "shared") == {"OTHER": "keep-me"}

    merge = {"name": "shared", "creationPolicy": "Merge"}
    apply(cluster, binding(namespace, "owner", data=data, target=merge))
    sb = wait_condition(cluster, SB, namespace, "owner", "Accepted", "False", "Conflicted")
    assert "appinfra.dev/merge-from: owner" in condition(sb, "Accepted")["message"]
    existing["metadata"]["annotations"] = {"appinfra.dev/merge-from": "owner"}
    apply(cluster, existing)  # the Secret's owner opts in
    wait_condition(cluster, SB, namespace, "owner", "Ready", "True")
    assert secret_data(cluster, namespace, "shared") == {"OTHER": "keep-me", "PW": "cp"}

    apply(cluster, binding(namespace, "orphan", data=data, target={"creationPolicy": "Orphan"}))
    wait_condition(cluster, SB, namespace, "orphan", "Ready", "True")
    cluster.kubectl("-n", namespace, "delete", SB, "orphan", "--wait=true", "--timeout=60s")
    time.sleep(3)  # give the garbage collector a chance to (wrongly) act
    assert secret_data(cluster, namespace, "orphan") == {"PW": "cp"}


def test_deletion_policy_when_the_remote_secret_is_gone(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    for name in ("keep", "drop"):
        put(stores, f"{namespace}/{name}", {"v": name})
        policy = "Retain" if name == "keep" else "Delete"
        data = [{"secretKey": "V", "remoteRef": {"key": f"{namespace}/{name}", "property": "v"}}]
        apply(cluster, binding(namespace, name, data=data, refreshInterval="10s",
                               target={"deletionPolicy": policy}))  # fmt: skip
        wait_condition(cluster, SB, namespace, name, "Ready", "True")
    for name in ("keep", "drop"):
        stores.bao.secrets.kv.v2.delete_metadata_and_all_versions(f"{namespace}/{name}")
    wait_condition(cluster, SB, namespace, "keep", "Synced", "False", "SecretNotFound")
    wait_condition(cluster, SB, namespace, "drop", "Synced", "False", "SecretNotFound")
    wait_gone(cluster, "secret", namespace, "drop", timeout=30)
    assert secret_data(cluster, namespace, "keep") == {"V": "keep"}


def test_backend_outage_keeps_the_secret_and_backs_off_then_recovers(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    """The store reaches OpenBao through a TCP proxy; the outage is the proxy resetting
    every connection (a crashed server). The backoff is counted there, as connections
    that reached the store's address: OpenBao cannot log what never got to it, and the
    operator's own count would agree with a broken backoff that it also counted."""
    put(stores, f"{namespace}/out", {"password": "stable"})
    data = [{"secretKey": "PW", "remoteRef": {"key": f"{namespace}/out", "property": "password"}}]
    store = "vault-outage"
    main = stores.config["secretStores"]["vault-main"]
    proxy = TcpProxy(main["vault"]["address"]).start()
    vault = {**main["vault"], "address": f"http://127.0.0.1:{proxy.port}"}
    stores.config["secretStores"][store] = {**main, "vault": vault}
    stores.write()
    try:
        apply(cluster, binding(namespace, "out", store, data=data, refreshInterval="10s"))
        wait_condition(cluster, SB, namespace, "out", "Ready", "True", timeout=60)
        before = get(cluster, "secret", namespace, "out")

        proxy.cut("reset")  # the store's server goes away
        sb = wait_condition(cluster, SB, namespace, "out", "Synced", "False", "BackendUnavailable")
        assert "vault-outage" in condition(sb, "Synced")["message"]
        start, counted = proxy.accepted, backend_requests(operator, store)
        time.sleep(30)
        # Capped exponential backoff, not one attempt per second: with a pooled
        # connection reset, each attempt is one new connection.
        attempts = proxy.accepted - start
        retries = backend_requests(operator, store) - counted
        print(f"in 30 s: {attempts} connections at the proxy, {retries:g} counted by appinfra")
        assert 1 <= attempts <= 8, attempts
        assert 1 <= retries <= 8, retries  # the metric agrees
        after = get(cluster, "secret", namespace, "out")
        assert after["data"] == before["data"]  # type: ignore[index]
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]  # type: ignore[index]

        # The backend returns: the binding recovers by itself.
        proxy.heal()
        wait_condition(cluster, SB, namespace, "out", "Synced", "True", timeout=90)
    finally:
        stores.config["secretStores"].pop(store, None)
        stores.write()
        proxy.stop()


def test_no_secret_value_leaks_anywhere(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    put(stores, f"{namespace}/canary", {"password": CANARY, "deep": {"x": CANARY}})
    ok = [{"secretKey": "PW", "remoteRef": {"key": f"{namespace}/canary", "property": "password"}}]
    apply(cluster, binding(namespace, "canary", data=ok))
    wait_condition(cluster, SB, namespace, "canary", "Ready", "True")
    # Failures that involve the value: a missing property and a failing template.
    missing = [{"secretKey": "PW", "remoteRef": {"key": f"{namespace}/canary", "property": "nope"}}]
    apply(cluster, binding(namespace, "canary-missing", data=missing))
    bad_template = {"template": {"data": {"X": "{{ PW + 1 }}"}}}
    apply(cluster, binding(namespace, "canary-template", data=ok, target=bad_template))
    wait_condition(cluster, SB, namespace, "canary-missing", "Synced", "False", "SecretNotFound")
    wait_condition(cluster, SB, namespace, "canary-template", "Synced", "False", "TemplateError")
    assert secret_data(cluster, namespace, "canary") == {"PW": CANARY}  # it did sync

    everything = [
        cluster.kubectl("get", "secretbindings,serviceprofiles,healthpolicies,ratelimitpolicies",
                        "-A", "-o", "json").stdout,
        cluster.kubectl("get", "events", "-A", "-o", "json").stdout,
        cluster.kubectl("get", "deployments,configmaps", "-A", "-o", "json").stdout,
        operator.metrics(),
        operator.process.log_path.read_text(errors="replace"),
    ]  # fmt: skip
    for text in everything:
        assert CANARY not in text


def test_fifty_bindings_on_five_keys_make_five_reads(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    for k in range(5):
        put(stores, f"{namespace}/shared{k}", {"v": str(k)})

    def reads() -> float:
        total = 0.0
        for line in operator.metrics().splitlines():
            if (
                line.startswith("appinfra_backend_requests_total{")
                and 'store="vault-shared"' in line
                and 'operation="get_secret"' in line
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total  # fmt: skip

    before = reads()
    bindings = [
        binding(namespace, f"b{i}", "vault-shared",
                data=[{"secretKey": "V", "remoteRef": {"key": f"{namespace}/shared{i % 5}",
                                                        "property": "v"}}])
        for i in range(50)
    ]  # fmt: skip
    apply(cluster, *bindings)
    for i in range(50):
        wait_condition(cluster, SB, namespace, f"b{i}", "Ready", "True", timeout=60)
    # Counted at OpenBao: each key read exactly once (the test's own writes left out).
    served = bao_requests(
        stores.bao_audit_log, prefix=f"secret/data/{namespace}/shared", operation="read"
    )
    assert Counter(read.path for read in served) == {
        f"secret/data/{namespace}/shared{k}": 1 for k in range(5)
    }
    assert reads() - before == 5  # the metric agrees
    assert secret_data(cluster, namespace, "b7") == {"V": "2"}


def test_two_bindings_on_one_consumer_the_oldest_wins_and_hands_over(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    put(stores, f"{namespace}/pair", {"a": "1", "b": "2"})
    apply(cluster, deployment(namespace, "consumer"))

    def rolling(name: str, prop: str) -> dict[str, Any]:
        data = [{"secretKey": "V", "remoteRef": {"key": f"{namespace}/pair", "property": prop}}]
        return binding(namespace, name, data=data,
                       targetRef={"kind": "Deployment", "name": "consumer"})  # fmt: skip

    # The older binding's name sorts last: only "the oldest wins" makes it the winner.
    apply(cluster, rolling("z-first", "a"))
    first = wait_condition(cluster, SB, namespace, "z-first", "Ready", "True")
    time.sleep(1.5)  # creationTimestamp has whole seconds: the second one is strictly newer
    apply(cluster, rolling("a-second", "b"))
    loser = wait_condition(cluster, SB, namespace, "a-second", "Accepted", "False", "Conflicted")
    assert first["metadata"]["creationTimestamp"] < loser["metadata"]["creationTimestamp"]
    message = condition(loser, "Accepted")["message"]
    assert "SecretBinding z-first already targets Deployment consumer" in message
    assert condition(loser, "Ready")["status"] == "False"
    assert "Conflicted" in {e["reason"] for e in events_for(cluster, namespace, "a-second")}
    # The loser writes nothing: no Secret, and the consumer keeps the winner's hash.
    assert get(cluster, "secret", namespace, "a-second") is None
    dep = get(cluster, "deployment", namespace, "consumer")
    assert dep["metadata"]["annotations"]["appinfra.dev/secretbinding"] == "z-first"  # type: ignore[index]
    template = dep["spec"]["template"]["metadata"]["annotations"]  # type: ignore[index]
    assert template["appinfra.dev/secret-hash"] == first["status"]["secretHMAC"]

    # The winner leaves: the other binding takes over the consumer by itself.
    cluster.kubectl("-n", namespace, "delete", SB, "z-first", "--wait=true", "--timeout=60s")
    second = wait_condition(cluster, SB, namespace, "a-second", "Ready", "True")
    assert secret_data(cluster, namespace, "a-second") == {"V": "2"}

    def handed_over() -> bool:
        dep = get(cluster, "deployment", namespace, "consumer") or {}
        meta = dep.get("metadata", {})
        pod = dep["spec"]["template"]["metadata"].get("annotations") or {}
        return bool(
            (meta.get("annotations") or {}).get("appinfra.dev/secretbinding") == "a-second"
            and pod.get("appinfra.dev/secret-hash") == second["status"]["secretHMAC"]
        )

    wait_until(handed_over, 30, "the consumer to carry the remaining binding's hash")
