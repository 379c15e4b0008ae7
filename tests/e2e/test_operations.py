"""What operators of appinfra see: metrics, structured logs, leader election."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import SYSTEM_NAMESPACE, Operator, Stores
from tests.e2e.test_serviceprofile import profile as service_profile
from tests.support.audit import Write, bao_requests, service_account_user, writes_by
from tests.support.kube import Cluster
from tests.support.objects import apply, deployment, wait_condition
from tests.support.rbac import chart_rules, service_account_kubeconfig
from tests.support.servers import wait_until


def profile(namespace: str, name: str) -> dict[str, Any]:
    """A small profile on the Deployment of the same name (a ConfigMap and a PDB)."""
    return service_profile(
        namespace, name, name, config={"data": {"A": "1"}}, disruption={"minAvailable": 1}
    )


def sample(metrics: str, metric: str, **labels: str) -> float | None:
    """The value of one sample, matching every given label (None if absent)."""
    for line in metrics.splitlines():
        if not line.startswith(metric + "{") and not line.startswith(metric + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_are_exported(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    """Every metric family shows up; the backend request counter equals what OpenBao's
    audit log recorded, through a store only this test uses (so no other test's reads
    are in either count)."""
    apply(cluster, deployment(namespace, "m"), profile(namespace, "m"))
    wait_condition(cluster, "serviceprofile", namespace, "m", "Ready", "True")
    stores.bao.secrets.kv.v2.create_or_update_secret(
        path=f"{namespace}/m", secret={"v": "1"}, mount_point="secret"
    )
    store = f"vault-{namespace}"
    stores.config["secretStores"][store] = stores.config["secretStores"]["vault-main"]
    stores.write()
    binding = {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": "SecretBinding",
        "metadata": {"name": "m", "namespace": namespace},
        "spec": {"store": store,
                 "data": [{"secretKey": "V", "remoteRef": {"key": f"{namespace}/m"}}]},
    }  # fmt: skip
    try:
        # A binding naming a store not loaded yet is Invalid, and retried on the reload.
        apply(cluster, binding)
        wait_condition(cluster, "secretbinding", namespace, "m", "Ready", "True")
        text = operator.metrics()
    finally:
        stores.config["secretStores"].pop(store)
        stores.write()

    assert (
        sample(text, "appinfra_reconcile_total", kind="ServiceProfile", result="success") or 0
    ) >= 1
    assert sample(text, "appinfra_reconcile_duration_seconds_count", kind="ServiceProfile")
    assert sample(
        text, "appinfra_reconcile_duration_seconds_bucket", kind="SecretBinding", le="+Inf"
    )
    assert (sample(text, "appinfra_managed_objects", kind="ServiceProfile") or 0) >= 1
    assert (sample(text, "appinfra_secret_sync_total", store=store, result="Synced") or 0) >= 1
    last = sample(
        text, "appinfra_secret_last_success_timestamp_seconds", namespace=namespace, name="m"
    )
    assert last is not None and abs(last - time.time()) < 300
    served = bao_requests(stores.bao_audit_log, f"secret/data/{namespace}/m", operation="read")
    assert served and not any(read.error for read in served)
    counted = sample(
        text, "appinfra_backend_requests_total", store=store, operation="get_secret", status="ok"
    )
    assert counted == len(served)
    assert sample(text, "appinfra_leader") == 1  # the only replica is the active one


def test_json_logs_carry_the_reconciled_object(
    cluster: Cluster, crds: Cluster, stores: Stores, namespace: str, workdir: Path
) -> None:
    op = Operator(cluster, workdir, f"operator-json-{namespace}", "--namespace", namespace,
                  "--log-format", "json", "--verbose")  # fmt: skip
    op.process.argv.remove("--all-namespaces")
    op.start()

    def reconciled() -> list[dict[str, Any]]:
        lines = op.process.log_path.read_text().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]  # one object a line
        assert all({"time", "level", "message"} <= r.keys() for r in records)
        return [
            r for r in records
            if r.get("kind") == "ServiceProfile" and r["message"].startswith("reconciled in")
        ]  # fmt: skip

    try:
        apply(cluster, deployment(namespace, "j"), profile(namespace, "j"))
        wait_condition(cluster, "serviceprofile", namespace, "j", "Ready", "True")
        wait_until(lambda: bool(reconciled()), 30, "a successful reconcile in the JSON log")
    finally:
        op.stop()
    done = reconciled()
    assert done[0]["namespace"] == namespace and done[0]["name"] == "j"
    assert len(done[0]["reconcileID"]) == 12
    assert len({r["reconcileID"] for r in done}) == len(done)  # one id per reconcile


def _elected(
    cluster: Cluster, stores: Stores, workdir: Path, namespace: str, name: str
) -> tuple[Operator, str]:
    """A replica with its own ServiceAccount (bound to the chart's rules), so that the
    API server's audit log tells its writes from the other replicas'; and its user."""
    account = f"{name}-{namespace}"
    kubeconfig = service_account_kubeconfig(
        cluster, SYSTEM_NAMESPACE, account, chart_rules(stores.config["secretStores"]),
        workdir / f"{account}.kubeconfig",
    )  # fmt: skip
    op = Operator(cluster, workdir, account, "--namespace", namespace,
                  "--leader-elect", "--lease-namespace", namespace)  # fmt: skip
    op.process.argv.remove("--all-namespaces")
    op.process.env.update({"POD_NAME": name, "KUBECONFIG": str(kubeconfig)})
    return op.start(), service_account_user(SYSTEM_NAMESPACE, account)


def _listed(writes: list[Write]) -> str:
    return "\n".join(map(str, writes))


def test_leader_election_hands_over_on_kill_and_on_sigterm(
    cluster: Cluster, crds: Cluster, stores: Stores, namespace: str, workdir: Path,
    audit_log: Path,
) -> None:  # fmt: skip
    """Writes are counted per replica at the API server (its audit log), not by the
    replicas' own counters: a standby that believes it writes nothing is the failure."""
    first, user_a = _elected(cluster, stores, workdir, namespace, "replica-a")
    wait_until(lambda: sample(first.metrics(), "appinfra_leader") == 1, 30, "a leader")
    second, user_b = _elected(cluster, stores, workdir, namespace, "replica-b")
    try:
        apply(cluster, deployment(namespace, "e1"), profile(namespace, "e1"))
        wait_condition(cluster, "serviceprofile", namespace, "e1", "Ready", "True", timeout=30)
        time.sleep(5)  # the standby saw the same events; a write of it would be logged by now
        assert sample(second.metrics(), "appinfra_leader") == 0
        assert writes_by(audit_log, user_a), "the leader's writes are in the audit log"
        standby = writes_by(audit_log, user_b)
        assert standby == [], f"the standby wrote:\n{_listed(standby)}"
        lease = cluster.kubectl_json("-n", namespace, "get", "lease", "appinfra")
        assert lease["spec"]["holderIdentity"] == "replica-a"

        # SIGKILL: no release; the standby takes over once the lease expires (15 s).
        first.process.kill()
        killed = time.monotonic()
        wait_until(lambda: sample(second.metrics(), "appinfra_leader") == 1, 30, "takeover")
        assert time.monotonic() - killed < 15 + 2 * 2 + 3  # duration + two retry periods
        apply(cluster, deployment(namespace, "e2"), profile(namespace, "e2"))
        wait_condition(cluster, "serviceprofile", namespace, "e2", "Ready", "True", timeout=30)
        assert writes_by(audit_log, user_b), "the new leader writes"

        # SIGTERM: the holder releases at once; a new replica takes over in a retry period.
        third, user_c = _elected(cluster, stores, workdir, namespace, "replica-c")
        time.sleep(3)
        assert sample(third.metrics(), "appinfra_leader") == 0
        standby = writes_by(audit_log, user_c)
        assert standby == [], f"the standby wrote:\n{_listed(standby)}"
        stopped = time.monotonic()
        assert second.process.stop() == 0
        wait_until(lambda: sample(third.metrics(), "appinfra_leader") == 1, 15, "fast takeover")
        assert time.monotonic() - stopped < 8
        lease = cluster.kubectl_json("-n", namespace, "get", "lease", "appinfra")
        assert lease["spec"]["holderIdentity"] == "replica-c"
        third.stop()
    finally:
        for op in (first, second):
            op.stop()
