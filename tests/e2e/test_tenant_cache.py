"""Tenant attack on the operator's cache (issue #12): anyone who can create ConfigMaps
can label them `app.kubernetes.io/managed-by: appinfra`, which the child informers
select. Cached whole, ~350 one-MiB ConfigMaps took the operator past its 256 MiB limit.

One test, against the real API server and a real `appinfra run`: 300 such ConfigMaps
of ~1 MiB each (incompressible, so the cache's compression cannot hide them), some
with an ownerReference that is not a controller reference of ours. Throughout, the
operator's RSS (VmRSS from /proc, sampled) stays within a bound that the 300 MiB of
payload would blow through; none of the ConfigMaps is touched; a profile created
during the attack converges; drift on a real child is still reverted; and a restarted
operator, which LISTs all of them, stays within the bound and sends zero writes.

A second test covers the other side of the change: a managed Secret is cached as
digests only, yet an edit to it is restored, and a restarted operator confirms it
without reading the backend.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any

from appinfra.kube.client import Kube
from appinfra.kube.resources import CONFIGMAP
from tests.e2e.conftest import STARTED, Operator, Stores
from tests.e2e.test_serviceprofile import profile as service_profile
from tests.support.audit import bao_reads, service_account_user, writes_by
from tests.support.kube import Cluster
from tests.support.objects import apply, deployment, get, wait_condition
from tests.support.rbac import Rule, chart_rules, service_account_kubeconfig
from tests.support.rss import PeakSampler, status_bytes
from tests.support.servers import http_ok, wait_until

COUNT = 300
VALUE_CHARS = 1_000_000  # base64 of random bytes: ~1 MB that zlib cannot shrink much
# RSS growth allowed over the operator's idle RSS. Cached whole, the attack adds
# ~75% of 300 MB (what zlib leaves of base64) = ~215 MiB; digests add almost nothing,
# and a LIST page (PAYLOAD_PAGE objects, parsed) is transient.
GROWTH_BOUND_MIB = 64
MIB = 1024 * 1024


def peak_rss(pid: int) -> PeakSampler:
    """Samples the process's RSS every 50 ms while the block runs (`.peak`, updated live)."""
    return PeakSampler(lambda: status_bytes(pid), 0.05)


def profile(namespace: str, name: str) -> dict[str, Any]:
    config = {"data": {"MODE": "live", "REGION": "eu"}, "inject": "EnvFrom"}
    return service_profile(namespace, name, name, config=config)


def attack_configmap(
    namespace: str, i: int, victim: dict[str, Any], dep: dict[str, Any]
) -> dict[str, Any]:
    """A tenant's ConfigMap carrying our managed-by label. Most carry nothing else (the
    issue's attack); every tenth names the victim profile as owner in its labels and
    has a non-controller ownerReference to it; every tenth (plus one) names a profile
    "ghost" and is controlled by the Deployment."""
    labels = {"app.kubernetes.io/managed-by": "appinfra"}
    meta: dict[str, Any] = {"name": f"stuffing-{i:03d}", "namespace": namespace, "labels": labels}
    if i % 10 == 0:
        labels.update({"appinfra.dev/owner-kind": "ServiceProfile",
                       "appinfra.dev/owner-name": "victim"})  # fmt: skip
        meta["ownerReferences"] = [{
            "apiVersion": "appinfra.dev/v1alpha1", "kind": "ServiceProfile", "controller": False,
            "name": "victim", "uid": victim["metadata"]["uid"]}]  # fmt: skip
    elif i % 10 == 1:
        labels.update({"appinfra.dev/owner-kind": "ServiceProfile",
                       "appinfra.dev/owner-name": "ghost"})  # fmt: skip
        meta["ownerReferences"] = [{
            "apiVersion": "apps/v1", "kind": "Deployment", "controller": True,
            "name": dep["metadata"]["name"], "uid": dep["metadata"]["uid"]}]  # fmt: skip
    blob = base64.b64encode(os.urandom(VALUE_CHARS * 3 // 4)).decode()
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"blob": blob}}


def scoped_operator(cluster: Cluster, workdir: Path, name: str, namespace: str) -> Operator:
    op = Operator(cluster, workdir, name, "--namespace", namespace)
    op.process.argv.remove("--all-namespaces")
    return op


def restarted_operator(
    cluster: Cluster, workdir: Path, account: str, namespace: str, rules: list[Rule]
) -> Operator:
    """A scoped operator (not started yet) running as ServiceAccount `account` in the
    test's own namespace (so it needs no other), bound to `rules`, resyncing every second."""
    kubeconfig = service_account_kubeconfig(
        cluster, namespace, account, rules, workdir / f"{account}.kubeconfig"
    )
    op = scoped_operator(cluster, workdir, account, namespace)
    op.process.env.update({"APPINFRA_RESYNC_SECONDS": "1", "KUBECONFIG": str(kubeconfig)})
    return op


def resource_versions(kube: Kube, namespace: str) -> dict[str, str]:
    """name -> resourceVersion of every ConfigMap, listed in small pages (they are big)."""
    out: dict[str, str] = {}
    token = ""
    while True:
        query = {"limit": "20", **({"continue": token} if token else {})}
        page = kube.request("GET", CONFIGMAP.path(namespace), query=query)
        out.update({i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in page["items"]})
        token = page["metadata"].get("continue") or ""
        if not token:
            return out


def metric(text: str, prefix: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(prefix):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_labelled_foreign_configmaps_cost_no_memory_and_are_never_touched(
    crds: Cluster, namespace: str, workdir: Path, audit_log: Path
) -> None:
    cluster = crds
    kube = Kube(cluster.api())
    op = scoped_operator(cluster, workdir, f"operator-tenant-{namespace}", namespace).start()
    try:
        apply(cluster, deployment(namespace, "victim"), profile(namespace, "victim"))
        wait_condition(cluster, "serviceprofile", namespace, "victim", "Ready", "True")
        victim = get(cluster, "serviceprofile", namespace, "victim")
        dep = get(cluster, "deployment", namespace, "victim")
        assert victim is not None and dep is not None
        time.sleep(2)  # let start-up allocations settle before the idle measurement
        pid = op.process.proc.pid  # type: ignore[union-attr]
        idle = status_bytes(pid)

        with peak_rss(pid) as peak:
            created = {}
            for i in range(COUNT):
                out = kube.create(CONFIGMAP, namespace, attack_configmap(namespace, i, victim, dep))
                created[out["metadata"]["name"]] = out["metadata"]["resourceVersion"]
                del out
            # Drift on the profile's real ConfigMap, made after the attack: the
            # ConfigMap informer delivers in order, so once this is reverted the
            # operator has handled every attack event before it.
            cluster.kubectl("-n", namespace, "patch", "configmap", "victim-config",
                            "--type=merge", "-p", '{"data":{"MODE":"tampered"}}')  # fmt: skip
            wait_until(
                lambda: (
                    get(cluster, "configmap", namespace, "victim-config")["data"]["MODE"]  # type: ignore[index]
                    == "live"
                ),
                60,
                "the drifted key of victim-config to be reverted",
            )
            # A profile applied during the attack converges.
            apply(cluster, deployment(namespace, "late"), profile(namespace, "late"))
            wait_condition(cluster, "serviceprofile", namespace, "late", "Ready", "True")
            assert get(cluster, "configmap", namespace, "late-config") is not None
        running_peak = peak.peak
    finally:
        op.stop()

    # A restart lists every one of them (in pages) and must stay within the same bound;
    # with nothing changed and the cache holding only digests, it writes nothing. It runs
    # as its own ServiceAccount (the chart's RBAC), so the API server's audit log counts
    # its writes, not its own metrics.
    account = f"operator-tenant-restart-{namespace}"
    fresh = restarted_operator(cluster, workdir, account, namespace, chart_rules())
    fresh.process.start()
    STARTED.append(fresh.process)
    pid = fresh.process.proc.pid  # type: ignore[union-attr]
    try:
        with peak_rss(pid) as peak:  # from the first LIST on
            url = f"http://127.0.0.1:{fresh.health_port}/healthz"
            fresh.process.wait_ready(lambda: http_ok(url), 60)

            def reconciled() -> float:
                prefix = 'appinfra_reconcile_total{kind="ServiceProfile",result="success"}'
                return metric(fresh.metrics(), prefix)

            wait_until(lambda: reconciled() >= 4, 90, "the restarted operator to resync")
        restart_peak = peak.peak
    finally:
        fresh.stop()

    report = (
        f"idle {idle / MIB:.0f} MiB, peak while attacked {running_peak / MIB:.0f} MiB, "
        f"peak of a restart listing them {restart_peak / MIB:.0f} MiB"
    )
    print(report)
    assert running_peak - idle < GROWTH_BOUND_MIB * MIB, report
    assert restart_peak - idle < GROWTH_BOUND_MIB * MIB, report
    # Its whole life, stop included, is the window: every write verb counts, Leases too.
    writes = writes_by(audit_log, service_account_user(namespace, account), leases=True)
    assert writes == [], "a restart with nothing changed wrote:\n" + "\n".join(map(str, writes))
    # Every tenant ConfigMap is exactly as its owner left it.
    versions = resource_versions(kube, namespace)
    assert {name: versions.get(name) for name in created} == created
    for name in ("victim", "late"):
        wait_condition(cluster, "serviceprofile", namespace, name, "Ready", "True")


def test_a_managed_secret_is_restored_and_a_restart_reads_no_backend(
    cluster: Cluster,
    operator: Operator,
    stores: Stores,
    namespace: str,
    workdir: Path,
    audit_log: Path,
) -> None:
    """The cache holds a managed Secret's digests, not its values. An edit is still
    seen and restored from the backend; a restarted operator confirms the Secret with
    one GET instead of reading the backend again, and writes nothing."""
    stores.bao.secrets.kv.v2.create_or_update_secret(
        path=f"{namespace}/db", secret={"password": "pw1"}, mount_point="secret"
    )
    remote = {"key": f"{namespace}/db", "property": "password"}
    binding = {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": "SecretBinding",
        "metadata": {"name": "db", "namespace": namespace},
        "spec": {"store": "vault-main", "refreshInterval": "1h",
                 "data": [{"secretKey": "DB_PASSWORD", "remoteRef": remote}]},
    }  # fmt: skip
    apply(cluster, binding)
    wait_condition(cluster, "secretbinding", namespace, "db", "Ready", "True")

    def value() -> str:
        secret = get(cluster, "secret", namespace, "db")
        return base64.b64decode(secret["data"]["DB_PASSWORD"]).decode()  # type: ignore[index]

    tampered = base64.b64encode(b"tampered").decode()
    cluster.kubectl("-n", namespace, "patch", "secret", "db", "--type=merge",
                    "-p", f'{{"data":{{"DB_PASSWORD":"{tampered}"}}}}')  # fmt: skip
    wait_until(lambda: value() == "pw1", 30, "the edited Secret to be restored")

    # Counted at the servers, not by the restarted operator: reads in OpenBao's audit
    # device, writes in the API server's audit log (it runs as its own ServiceAccount).
    def reads() -> list[str]:
        return [path for path in bao_reads(stores.bao_audit_log) if f"/{namespace}/" in path]

    reads_before = reads()
    assert f"secret/data/{namespace}/db" in reads_before  # the control: reads are logged
    account = f"operator-sb-restart-{namespace}"
    rules = chart_rules(stores.config["secretStores"])  # the stores' token Secret too
    fresh = restarted_operator(cluster, workdir, account, namespace, rules)
    fresh.start()
    try:
        prefix = 'appinfra_reconcile_total{kind="SecretBinding",result="success"}'
        wait_until(lambda: metric(fresh.metrics(), prefix) >= 3, 60, "the restart to resync")
    finally:
        fresh.stop()
    assert reads() == reads_before, "a restart read the backend"
    writes = writes_by(audit_log, service_account_user(namespace, account), leases=True)
    assert writes == [], "a restart with nothing changed wrote:\n" + "\n".join(map(str, writes))
    assert value() == "pw1"
