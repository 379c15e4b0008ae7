"""SecretBinding dynamic end to end: database credentials from OpenBao's database engine
against a real PostgreSQL server (tests/support/lifetime.py), through the session's
`appinfra run`; leases looked up in OpenBao (sys/leases/lookup), logins tried in
PostgreSQL, requests counted at OpenBao's audit device."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest

from tests.e2e.conftest import Operator, Stores
from tests.support.audit import BaoRequest, bao_requests
from tests.support.kube import Cluster
from tests.support.lifetime import (
    Postgres,
    add_store,
    database_role,
    enable_database,
    start_postgres,
)
from tests.support.objects import (
    apply,
    condition,
    deployment,
    events_for,
    frozen,
    get,
    wait_condition,
    wait_gone,
)
from tests.support.servers import wait_until
from tests.support.tcpproxy import TcpProxy

SB = "secretbinding"
STORE = "vault-db"
LEASE_KEY = ".appinfra-lease-id"
MAX_TTL = 21


def stamp(text: str) -> float:
    """Epoch seconds of an RFC 3339 time, as OpenBao (nanoseconds) or status writes it."""
    head, _, _ = text.rstrip("Z").partition(".")
    return datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC).timestamp()


@pytest.fixture(scope="module")
def postgres(workdir: Path) -> Iterator[Postgres]:
    yield from start_postgres(workdir / "postgres")


@pytest.fixture(scope="module")
def database(stores: Stores, operator: Operator, postgres: Postgres) -> Postgres:
    """OpenBao's database engine on the PostgreSQL server, and a store whose keyPrefix lets
    a namespace use its own roles only (database/creds/<namespace>-*)."""
    enable_database(stores.bao, postgres)
    add_store(stores, STORE, "database/creds/{namespace}-")
    return postgres


def dynamic_binding(
    namespace: str, name: str, store: str = STORE, **dynamic: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": "SecretBinding",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"store": store, "dynamic": {"path": f"database/creds/{namespace}-app",
                                             **dynamic}},
    }  # fmt: skip


def values(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    secret = get(cluster, "secret", namespace, name) or {}
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def lookup(bao: hvac.Client, lease_id: str) -> dict[str, Any] | None:
    """The lease as OpenBao knows it, or None when it is gone (revoked or expired)."""
    try:
        return dict(bao.sys.read_lease(lease_id)["data"])
    except hvac.exceptions.InvalidRequest:
        return None


def operator_requests(stores: Stores) -> list[BaoRequest]:
    """Requests OpenBao answered for anyone but this test's root client (the operator's
    store uses the root token too: the test's own lookups are told apart by path), and
    but certificates of earlier tests' bindings, renewing while their namespace goes."""
    return [r for r in bao_requests(stores.bao_audit_log)
            if r.path != "sys/leases/lookup" and not r.path.startswith("pki/")]  # fmt: skip


def lease_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    sb = get(cluster, SB, namespace, name) or {}
    return dict((sb.get("status") or {}).get("lease") or {})


def test_lease_renewed_then_reissued_at_max_ttl_then_revoked_on_delete(
    cluster: Cluster, stores: Stores, database: Postgres, namespace: str
) -> None:
    role = f"{namespace}-app"
    database_role(stores.bao, role, ttl="6s", max_ttl=f"{MAX_TTL}s")
    apply(cluster, deployment(namespace, "api"))
    binding = dynamic_binding(namespace, "db", renewPercent=50)
    binding["spec"]["targetRef"] = {"kind": "Deployment", "name": "api"}
    dsn = "postgresql://{{ username }}:{{ password }}@127.0.0.1:" + f"{database.port}/postgres"
    binding["spec"]["target"] = {"template": {"data": {"DSN": dsn}}}
    apply(cluster, binding)
    sb = wait_condition(cluster, SB, namespace, "db", "Ready", "True")
    first = values(cluster, namespace, "db")
    assert sorted(first) == [LEASE_KEY, "DSN", "password", "username"]
    assert first["DSN"].startswith(f"postgresql://{first['username']}:")
    assert database.can_log_in(first["username"], first["password"])
    lease_id = first[LEASE_KEY]
    status = sb["status"]["lease"]
    assert status["idHash"] == hashlib.sha256(lease_id.encode()).hexdigest()
    assert status["durationSeconds"] == 6 and status["renewable"] is True
    assert first["password"] not in json.dumps(sb) and lease_id not in json.dumps(sb)
    first_hash = sb["status"]["secretHMAC"]
    baseline = len(operator_requests(stores))
    expiry = lookup(stores.bao, lease_id)
    assert expiry is not None

    # Renewed: the same credentials, a later expiry in OpenBao, one request per renewal.
    wait_until(lambda: lease_status(cluster, namespace, "db").get("renewals", 0) >= 2, 20,
               "two renewals of the lease")  # fmt: skip
    assert values(cluster, namespace, "db") == first
    renewed = lookup(stores.bao, lease_id)
    assert renewed is not None and renewed["expire_time"] > expiry["expire_time"]
    # Every request the operator sent OpenBao since: one sys/leases/renew per renewal,
    # nothing else (status is read between two counts: a renewal may be in flight).
    before = lease_status(cluster, namespace, "db")["renewals"]
    sent = operator_requests(stores)[baseline:]
    after = lease_status(cluster, namespace, "db")["renewals"]
    assert {r.path for r in sent} == {"sys/leases/renew"}, sent
    assert before <= len(sent) <= after, (before, len(sent), after)
    creds = [r for r in bao_requests(stores.bao_audit_log, f"database/creds/{role}")]
    assert len(creds) == 1  # renewing issued nothing

    # At the max TTL: new credentials, written before the old lease ends; the consumer rolls.
    wait_until(lambda: values(cluster, namespace, "db").get("username") != first["username"],
               30, "credentials issued anew at the max TTL")  # fmt: skip
    second = values(cluster, namespace, "db")
    assert database.can_log_in(second["username"], second["password"])
    assert second[LEASE_KEY] != lease_id
    new_hash = hashlib.sha256(second[LEASE_KEY].encode()).hexdigest()
    wait_until(lambda: lease_status(cluster, namespace, "db").get("idHash") == new_hash, 10,
               "status to show the new lease")  # fmt: skip
    # Before the old lease's max TTL (21s after it was issued), not after it ran out.
    issued = stamp(lease_status(cluster, namespace, "db")["issueTime"])
    assert issued <= stamp(expiry["issue_time"]) + MAX_TTL - 1
    wait_until(lambda: (get(cluster, "deployment", namespace, "api") or {})["spec"]["template"]
               ["metadata"].get("annotations", {}).get("appinfra.dev/secret-hash")
               not in (None, first_hash), 20, "the consumer to roll")  # fmt: skip
    assert "Reissued" in {e["reason"] for e in events_for(cluster, namespace, "db")}

    # Deleted: the lease is revoked (OpenBao) and its PostgreSQL role dropped.
    cluster.kubectl("-n", namespace, "delete", SB, "db", "--wait=true", "--timeout=60s")
    wait_gone(cluster, SB, namespace, "db")
    assert lookup(stores.bao, second[LEASE_KEY]) is None
    assert second["username"] not in database.roles()
    assert not database.can_log_in(second["username"], second["password"])


def test_outage_keeps_the_credentials_and_the_status_honest(
    cluster: Cluster, stores: Stores, database: Postgres, namespace: str
) -> None:
    """OpenBao unreachable (a TCP proxy resetting connections) when the lease is due:
    the Secret keeps the credentials, Synced=False says why, Ready stays True while the
    lease is valid and turns False when it expired; once OpenBao is back, new credentials."""
    database_role(stores.bao, f"{namespace}-app", ttl="8s", max_ttl="1h")
    main = stores.config["secretStores"]["vault-main"]
    proxy = TcpProxy(main["vault"]["address"]).start()
    store = "vault-db-outage"
    try:
        add_store(stores, store, "database/creds/{namespace}-",
                  address=f"http://127.0.0.1:{proxy.port}")  # fmt: skip
        apply(cluster, dynamic_binding(namespace, "db", store, renewPercent=50))
        wait_condition(cluster, SB, namespace, "db", "Ready", "True")
        before = get(cluster, "secret", namespace, "db")
        assert before is not None
        proxy.cut("reset")
        sb = wait_condition(cluster, SB, namespace, "db", "Synced", "False", "BackendUnavailable",
                            timeout=20)  # fmt: skip
        assert condition(sb, "Ready")["status"] == "True"
        assert condition(sb, "Ready")["reason"] == "Valid"
        assert "valid until" in condition(sb, "Ready")["message"]
        sb = wait_condition(cluster, SB, namespace, "db", "Ready", "False", "Expired", timeout=30)
        after = get(cluster, "secret", namespace, "db")
        assert after is not None and after["data"] == before["data"]
        proxy.heal()
        wait_until(lambda: values(cluster, namespace, "db").get("username")
                   != base64.b64decode(before["data"]["username"]).decode(),
                   60, "new credentials after the outage")  # fmt: skip
        wait_condition(cluster, SB, namespace, "db", "Ready", "True", "Synced", timeout=20)
    finally:
        stores.config["secretStores"].pop(store, None)
        stores.write()
        proxy.stop()


def test_restart_with_status_lost_keeps_the_lease_in_the_secret(
    cluster: Cluster, stores: Stores, operator: Operator, database: Postgres, namespace: str
) -> None:
    """The lease id is in the Secret: a restarted operator that finds no status looks the
    lease up (one request) and keeps the credentials, issuing nothing."""
    database_role(stores.bao, f"{namespace}-app", ttl="1h", max_ttl="2h")
    apply(cluster, dynamic_binding(namespace, "db"))
    sb = wait_condition(cluster, SB, namespace, "db", "Ready", "True")
    before = values(cluster, namespace, "db")
    path = f"database/creds/{namespace}-app"
    assert len(bao_requests(stores.bao_audit_log, path)) == 1
    lookups = len(bao_requests(stores.bao_audit_log, "sys/leases/lookup"))
    operator.stop()
    try:
        cluster.kubectl("-n", namespace, "patch", SB, "db", "--subresource=status",
                        "--type=merge", "-p", '{"status": null}')  # fmt: skip
    finally:
        operator.start()
    after = wait_condition(cluster, SB, namespace, "db", "Ready", "True")
    assert values(cluster, namespace, "db") == before
    assert after["status"]["lease"]["idHash"] == sb["status"]["lease"]["idHash"]
    assert len(bao_requests(stores.bao_audit_log, path)) == 1
    assert len(bao_requests(stores.bao_audit_log, "sys/leases/lookup")) == lookups + 1


def test_credentials_that_cannot_be_written_are_revoked(
    cluster: Cluster, stores: Stores, database: Postgres, namespace: str
) -> None:
    """The API server refuses the Secret (a ValidatingAdmissionPolicy, as a frozen
    namespace would): every credential issued for it is revoked at once, none is left
    behind in PostgreSQL while the binding retries."""
    with frozen(cluster, namespace, "secrets", "Secret"):
        role = f"{namespace}-app"
        database_role(stores.bao, role, ttl="1h", max_ttl="2h")
        apply(cluster, dynamic_binding(namespace, "db"))
        sb = wait_condition(cluster, SB, namespace, "db", "Synced", "False", "Forbidden")
        assert "writing Secret db failed" in condition(sb, "Synced")["message"]
        # PostgreSQL login roles are named v-<who>-<OpenBao role, cut to 8>-<random>-<time>.
        mine = f"v-token-{role[:8]}-"
        wait_until(lambda: len(bao_requests(stores.bao_audit_log, f"database/creds/{role}")) >= 2,
                   30, "a retry issuing again")  # fmt: skip
        time.sleep(1)  # the revocation of the last one is sent right after its failed write
        left = {r for r in database.roles() if r.startswith(mine)}
        issued = len(bao_requests(stores.bao_audit_log, f"database/creds/{role}"))
        # At most one in flight (issued, not yet refused and revoked); never one per retry.
        assert issued >= 2 and len(left) <= 1, (issued, left)
        assert get(cluster, "secret", namespace, "db") is None


def test_scoping_refuses_before_any_backend_call(
    cluster: Cluster, stores: Stores, database: Postgres, namespace: str
) -> None:
    """A path outside the namespace's keyPrefix and a store that does not allow the
    namespace: Forbidden, and no request reaches OpenBao (its audit log)."""
    other = f"database/creds/other-{namespace}"
    apply(cluster, dynamic_binding(namespace, "outside", path=other))
    sb = wait_condition(cluster, SB, namespace, "outside", "Synced", "False", "Forbidden")
    assert f"database/creds/{namespace}-" in condition(sb, "Synced")["message"]
    apply(cluster, dynamic_binding(namespace, "guarded", "vault-guarded"))
    wait_condition(cluster, SB, namespace, "guarded", "Synced", "False", "Forbidden")
    time.sleep(2)  # time for a (wrong) late request
    paths = {r.path for r in bao_requests(stores.bao_audit_log)}
    assert other not in paths
    assert f"database/creds/{namespace}-app" not in paths
    assert get(cluster, "secret", namespace, "outside") is None


def test_a_changed_request_revokes_the_replaced_lease_only_with_revoke_on_reissue(
    cluster: Cluster, stores: Stores, database: Postgres, namespace: str
) -> None:
    """A new path (another role) issues new credentials. The lease they replace is left
    to expire by default (pods that have not rolled yet still use it), and revoked at
    once with revokeOnReissue: OpenBao shows it gone and PostgreSQL its role dropped."""
    for role in ("app", "other"):
        database_role(stores.bao, f"{namespace}-{role}", ttl="1h", max_ttl="2h")
    apply(cluster, dynamic_binding(namespace, "db"))
    wait_condition(cluster, SB, namespace, "db", "Ready", "True")
    first = values(cluster, namespace, "db")

    def switch(role: str, revoke: bool, old: dict[str, str]) -> dict[str, str]:
        spec = {"path": f"database/creds/{namespace}-{role}", "revokeOnReissue": revoke}
        cluster.kubectl("-n", namespace, "patch", SB, "db", "--type=merge",
                        "-p", json.dumps({"spec": {"dynamic": spec}}))  # fmt: skip
        wait_until(lambda: values(cluster, namespace, "db").get(LEASE_KEY) != old[LEASE_KEY],
                   30, f"credentials issued for {role}")  # fmt: skip
        new = values(cluster, namespace, "db")
        assert database.can_log_in(new["username"], new["password"])
        return new

    second = switch("other", False, first)
    time.sleep(2)  # a revocation would have been sent right after the write
    assert lookup(stores.bao, first[LEASE_KEY]) is not None, "revoked without revokeOnReissue"
    assert database.can_log_in(first["username"], first["password"])

    switch("app", True, second)
    wait_until(lambda: lookup(stores.bao, second[LEASE_KEY]) is None, 20,
               "the replaced lease revoked")  # fmt: skip
    assert second["username"] not in database.roles()
