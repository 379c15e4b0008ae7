"""`make bench`: appinfra against the performance targets in DESIGN.md, on real servers.

Starts its own control plane, OpenBao and operator processes (the e2e harness's
classes), measures, prints a table and writes bench/results/<timestamp>.json and
bench/results/latest.json. See bench/README.md for what each number means.

    .venv/bin/python bench/run.py [--count 1000] [--profile] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support / tests.e2e.conftest: the e2e harness

import env  # noqa: E402
import kubeapi  # noqa: E402
import objects  # noqa: E402
import pprof  # noqa: E402
import promtext  # noqa: E402
import pyspy  # noqa: E402
import session  # noqa: E402
from kubeapi import Api, Obj, path  # noqa: E402
from promtext import Metrics  # noqa: E402
from session import RESULTS, say, wait_all, wait_for  # noqa: E402
from tests.support.kube import Cluster  # noqa: E402

SP_PATH = path(objects.API, "serviceprofiles")
KINDS = {  # plural -> (condition that means done, LIST path)
    "serviceprofiles": ("Ready", SP_PATH),
    "healthpolicies": ("Ready", path(objects.API, "healthpolicies")),
    "ratelimitpolicies": ("Ready", path(objects.API, "ratelimitpolicies")),
    "secretbindings": ("Synced", path(objects.API, "secretbindings")),
}
MANAGED_SP = "app.kubernetes.io/managed-by=appinfra,appinfra.dev/owner-kind=ServiceProfile"


def done_count(api: Api, plural: str, prefix: str) -> tuple[int, int]:
    """(done, total) of one kind in the bench's namespaces, from one LIST: done means the
    kind's condition is True for the current generation."""
    cond_type, list_path = KINDS[plural]
    done = total = 0
    for item in api.list(list_path):
        meta = item["metadata"]
        if not meta["namespace"].startswith(prefix):
            continue
        total += 1
        status = item.get("status") or {}
        if status.get("observedGeneration") != meta.get("generation"):
            continue
        if any(
            c.get("type") == cond_type and c.get("status") == "True"
            for c in status.get("conditions", [])
        ):
            done += 1
    return done, total


def wait_done(
    api: Api, plural: str, prefix: str, count: int, timeout: float, op: env.BenchOperator
) -> float:
    """Monotonic time all `count` were first seen done (one LIST per poll)."""

    def done() -> int:
        op.healthy()  # raises if the operator died
        return done_count(api, plural, prefix)[0]

    return wait_all(done, count, f"{plural} done", timeout)


def wait_quiet(
    op: env.BenchOperator, quiet: float = 3.0, timeout: float = 180, at_least: float = 0
) -> Metrics:
    """Until the operator's reconcile count (>= at_least) has not moved for `quiet` s."""
    deadline = time.monotonic() + timeout
    last_value, since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        m = Metrics.scrape(op.metrics_port)
        value = m.reconciles()
        now = time.monotonic()
        if value != last_value:
            last_value, since = value, now
        elif value >= at_least and now - since >= quiet:
            return m
        time.sleep(0.5)
    raise TimeoutError(f"operator still reconciling after {timeout:.0f}s")


def spread(stamps: Any) -> float:
    """Seconds between the earliest and the latest of some RFC 3339 timestamps."""
    times = [datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").timestamp() for t in stamps if t]
    return max(times) - min(times) if times else 0.0


MANAGED = "app.kubernetes.io/managed-by=appinfra"
WATCHED = (  # what the operator watches and caches (appinfra/manager.py)
    *((objects.API, plural, "") for plural in KINDS),
    ("apps/v1", "deployments", ""),
    ("networking.k8s.io/v1", "ingresses", ""),
    ("v1", "configmaps", MANAGED),
    ("v1", "secrets", MANAGED),
    ("autoscaling/v2", "horizontalpodautoscalers", MANAGED),
    ("networking.k8s.io/v1", "networkpolicies", MANAGED),
    ("policy/v1", "poddisruptionbudgets", MANAGED),
)


def watched_sizes(api: Api) -> dict[str, dict[str, int]]:
    """Objects the operator's watches deliver, and their JSON size with and without
    metadata.managedFields: what an informer cache holds, for reading the RSS number."""
    out = {}
    for version, plural, selector in WATCHED:
        items = api.list(path(version, plural), **({"labelSelector": selector} if selector else {}))
        size = sum(len(json.dumps(i, separators=(",", ":"))) for i in items)
        managed = sum(
            len(json.dumps(i["metadata"].get("managedFields", []), separators=(",", ":")))
            for i in items
        )
        out[plural] = {
            "count": len(items),
            "json_kib": round(size / 1024),
            "managed_fields_kib": round(managed / 1024),
        }
    return out


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counters that moved, largest first."""
    moved = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    return dict(sorted(moved.items(), key=lambda kv: -kv[1]))


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- phases ----------------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        workdir: Path,
        procs: env.Processes,
        stamp: str,
        results: dict[str, Any],
    ):
        self.args = args
        self.workdir = workdir
        self.procs = procs
        self.workers = args.workers
        self.count = args.count
        self.ns = args.namespaces
        self.op_slots = objects.slots("bench-op", args.count, args.namespaces)
        self.plain_slots = objects.slots("bench-plain", args.count, args.namespaces)
        self.results = results  # the report's: what was measured survives a failed phase
        self.api: Api | None = None
        self.cluster: Cluster | None = None
        self.plane_pid = 0
        self.stamp = stamp

    def operator(self, name: str, **extra: str) -> env.BenchOperator:
        assert self.cluster is not None
        settings = {
            "APPINFRA_WORKERS": str(self.workers),
            "APPINFRA_RESYNC_SECONDS": "600",
            **extra,
        }
        return env.BenchOperator(self.cluster, self.workdir, self.procs, name, **settings)

    def cpu(self, op: env.BenchOperator | None = None) -> dict[str, float]:
        """CPU seconds so far: each control-plane process, the operator, the bench."""
        sessions = {"controlplane": self.plane_pid}
        if op is not None:
            sessions["operator"] = op.pid
        return env.cpu_by_process(sessions)

    def apiserver_profile(self, phase: str) -> pprof.ApiServerProfile | None:
        seconds = self.args.apiserver_profile
        if not seconds or self.api is None:
            return None
        out = RESULTS / f"apiserver-{phase}-{self.stamp}.pprof"
        return pprof.ApiServerProfile(self.api, seconds, out).start()

    def apiserver_requests(self) -> dict[str, float]:
        assert self.api is not None
        return promtext.apiserver_requests(self.api)

    def setup(self) -> None:
        say("starting the control plane")
        self.plane_pid, self.cluster = env.start_controlplane(self.workdir, self.procs)
        if self.args.pin:
            # The control plane on core 0; the bench, the plain client and the operator
            # (started later, it inherits the bench's affinity) on core 1.
            threads = env.pin_session(self.plane_pid, {0})
            env.pin_self({1})
            say(f"pinned: control plane ({threads} threads) on core 0, bench and clients on 1")
        env.install_crds(self.cluster)
        self.api = api = Api(self.cluster.kubeconfig, pool=2 * self.workers)
        say("starting OpenBao")
        self.bao = env.start_openbao(self.workdir, self.procs)
        api.create(objects.namespace(env.SYSTEM_NAMESPACE))
        api.create(env.token_secret(env.SYSTEM_NAMESPACE, self.bao.token))
        env.write_operator_config(self.workdir, env.operator_config(self.bao, "bench-op-*"))
        namespaces = {s.namespace for s in self.op_slots + self.plain_slots}
        kubeapi.create_all(api, map(objects.namespace, sorted(namespaces)), self.workers, "ns")
        profiles = [objects.serviceprofile(s) for s in self.op_slots]
        objects.check(profiles)
        objects.check([f(self.op_slots[0]) for f in (objects.healthpolicy,
                                                      objects.ratelimitpolicy)])  # fmt: skip
        say(f"creating {2 * self.count} Deployments, {self.count} Ingresses, "
            f"{self.count} ServiceProfiles")  # fmt: skip
        deployments = [objects.deployment(s) for s in self.op_slots + self.plain_slots]
        seconds = kubeapi.create_all(api, deployments, self.workers, "Deployments")
        say(f"  Deployments created in {seconds:.1f}s")
        kubeapi.create_all(api, map(objects.ingress, self.op_slots), self.workers, "Ingresses")
        kubeapi.create_all(api, profiles, self.workers, "ServiceProfiles")
        say("setup done")

    def plain(self) -> None:
        """The baseline: the same objects and Deployment patches, server-side applied by a
        plain client with the same number of threads, into fresh namespaces."""
        say(f"plain client: applying {self.count} profiles' objects with {self.workers} threads")
        intents = [objects.plain_intents(s) for s in self.plain_slots]
        assert self.cluster is not None
        client = Api(self.cluster.kubeconfig, pool=self.workers)
        cpu_before = self.cpu()

        def apply_all(objs: list[Obj]) -> None:
            for obj in objs:
                client.apply(obj, objects.SP_MANAGER)

        profile = self.apiserver_profile("plain")
        served = self.apiserver_requests()
        result = kubeapi.run_pool(apply_all, intents, self.workers)
        self.results["apiserver_requests_plain"] = delta(served, self.apiserver_requests())
        if profile is not None:
            self.results["apiserver_profile_plain"] = profile.summary()
        cpu = env.cpu_delta(cpu_before, self.cpu())
        client.close()
        if result.errors:
            raise RuntimeError(f"plain client failed: {result.errors[:3]}")
        self.results["plain"] = {
            "seconds": round(result.seconds, 2),
            "requests": client.count,
            "requests_per_second": round(client.count / result.seconds, 1),
            "cpu_seconds": cpu,
        }
        say(f"  plain client: {result.seconds:.1f}s, {client.count} requests")
        # Its objects go away before the operator starts, so the operator's watches and
        # cache see exactly what they would without the baseline.
        assert self.api is not None
        api = self.api
        plain_ns = sorted({s.namespace for s in self.plain_slots})
        for ns in plain_ns:
            api.request("DELETE", path("v1", "namespaces", name=ns))
        wait_for(
            lambda: all(api.get(path("v1", "namespaces", name=ns)) is None for ns in plain_ns),
            600, "the plain client's namespaces to be deleted", 2.0,
        )  # fmt: skip
        say("  plain client's namespaces deleted")

    def converge(self) -> env.BenchOperator:
        """Cold start: the operator starts after the 1,000 profiles exist."""
        assert self.api is not None
        say(f"operator: cold start with {self.count} ServiceProfiles waiting")
        cpu_before = self.cpu()
        served = self.apiserver_requests()
        op = self.operator("operator-converge").spawn()
        apiserver = self.apiserver_profile("operator")
        recorder = None
        if self.args.profile:
            exe = pyspy.find()
            if exe is None:
                raise RuntimeError("--profile needs py-spy: uv pip install --python .venv py-spy")
            op.wait_healthy()
            out = RESULTS / f"profile-{self.stamp}.txt"
            recorder = pyspy.Recorder(exe, op.pid, out).start()
            assert recorder.proc is not None
            self.procs.others.append(recorder.proc)
        try:
            ready_at = wait_done(self.api, "serviceprofiles", "bench-op-", self.count, 900, op)
        finally:
            if recorder is not None:
                recorder.stop()
        seconds = ready_at - op.started_at
        cpu = env.cpu_delta(cpu_before, self.cpu(op))
        self.results["apiserver_requests_operator"] = delta(served, self.apiserver_requests())
        op.healthy()
        m = wait_quiet(op)
        children = {
            kind: len(self.api.list(path(version, plural), labelSelector=MANAGED_SP))
            for kind, version, plural in (
                ("ConfigMap", "v1", "configmaps"),
                ("HorizontalPodAutoscaler", "autoscaling/v2", "horizontalpodautoscalers"),
                ("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies"),
                ("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets"),
            )
        }
        reconciles = m.reconciles("ServiceProfile")
        duration = m.by("appinfra_reconcile_duration_seconds_sum", "kind")
        self.results["converge"] = {
            "seconds": round(seconds, 2),
            "startup_seconds": round(op.ready_at - op.started_at, 2) if op.ready_at else None,
            "requests": m.requests(),
            "requests_total": sum(m.requests().values()),
            "writes": m.writes(),
            "reconciles": reconciles,
            "mean_reconcile_seconds": round(
                duration.get(("ServiceProfile",), 0) / reconciles, 4
            ) if reconciles else None,
            "children": children,
            "cpu_seconds": cpu,
            "memory_mib": op.memory(),
        }  # fmt: skip
        plain = self.results["plain"]["seconds"]
        self.results["converge"]["ratio"] = round(seconds / plain, 3)
        say(f"  operator converged in {seconds:.1f}s (plain {plain:.1f}s, "
            f"ratio {seconds / plain:.2f}); children {children}")  # fmt: skip
        if apiserver is not None:
            self.results["apiserver_profile_operator"] = apiserver.summary()
        if recorder is not None:
            self.results["profile"] = pyspy.summarize(recorder.out)
            self.results["profile"]["file"] = str(recorder.out)
        return op

    def latency(self, op: env.BenchOperator) -> None:
        """Spec change -> ConfigMap carries the new value, seen through a watch."""
        assert self.api is not None
        n = min(self.args.latency_samples, self.count)
        say(f"latency: {n} config.data changes, one at a time")
        wait_quiet(op)
        watch = kubeapi.ConfigMapWatch(self.api, MANAGED_SP, objects.LATENCY_KEY).start()
        token = secrets.token_hex(4)
        step = max(1, self.count // n)
        samples: list[float] = []
        missed = 0
        try:
            for i in range(n):
                slot = self.op_slots[(i * step) % self.count]
                value = f"{i}-{token}"
                patch = {"spec": {"config": {"data": {objects.LATENCY_KEY: value}}}}
                sp_path = path(objects.API, "serviceprofiles", slot.namespace, slot.name)
                start = time.monotonic()
                self.api.merge_patch(sp_path, patch)
                seen = watch.wait_for(slot.namespace, f"{slot.name}-config", value, 30)
                if seen is None:
                    missed += 1
                    say(f"  {slot.name}: ConfigMap not updated within 30s")
                    if missed >= 5:
                        raise RuntimeError("5 spec changes never reached their ConfigMap")
                    continue
                samples.append(seen - start)
        finally:
            watch.stop()
        if not samples:
            raise RuntimeError("no latency sample")
        self.results["latency"] = {
            "samples": len(samples),
            "missed": missed,
            "p50_seconds": round(percentile(samples, 50), 4),
            "p99_seconds": round(percentile(samples, 99), 4),
            "max_seconds": round(max(samples), 4),
            "mean_seconds": round(sum(samples) / len(samples), 4),
            "watch_errors": watch.errors[:5],
        }
        say(f"  p50 {percentile(samples, 50) * 1000:.0f} ms, "
            f"p99 {percentile(samples, 99) * 1000:.0f} ms")  # fmt: skip

    def resync(self) -> None:
        """Writes while nothing changes: a restart (every resource reconciled from a cold
        cache) and then one periodic resync pass (APPINFRA_RESYNC_SECONDS)."""
        period = self.args.resync_seconds
        say(f"no-op resync: restart, then a periodic pass (APPINFRA_RESYNC_SECONDS={period})")
        op = self.operator("operator-resync", APPINFRA_RESYNC_SECONDS=str(period)).spawn()
        try:
            op.wait_healthy()
            first = wait_quiet(op, at_least=self.count, timeout=300)
            restart_done = time.monotonic() - op.started_at
            # The periodic pass enqueues everything at RESYNC + uniform(0, RESYNC/2).
            wait_for(lambda: time.monotonic() - op.started_at > 1.5 * period + 1,
                     1.5 * period + 60, "the periodic resync to be scheduled", 1.0)  # fmt: skip
            second = wait_quiet(
                op, at_least=first.reconciles("ServiceProfile") + 0.9 * self.count, timeout=300
            )
            changed = {
                k: v - first.requests().get(k, 0)
                for k, v in second.requests().items()
                if v != first.requests().get(k, 0)
            }
            self.results["resync"] = {
                "writes_restart": first.writes(),
                "writes_periodic": second.writes() - first.writes(),
                "writes": second.writes(),
                "reconciles_restart": first.reconciles("ServiceProfile"),
                "reconciles_periodic": second.reconciles("ServiceProfile")
                - first.reconciles("ServiceProfile"),
                "restart_seconds": round(restart_done, 1),
                "requests_restart": first.requests(),
                "requests_periodic": changed,
            }
            say(f"  writes: restart {first.writes():.0f}, periodic "
                f"{second.writes() - first.writes():.0f}")  # fmt: skip
        finally:
            op.stop()

    def load_everything(self) -> env.BenchOperator:
        """1,000 HealthPolicies and RateLimitPolicies join the profiles; a cold start."""
        assert self.api is not None
        say(f"creating {self.count} HealthPolicies and {self.count} RateLimitPolicies")
        kubeapi.create_all(self.api, map(objects.healthpolicy, self.op_slots), self.workers, "HP")
        kubeapi.create_all(
            self.api, map(objects.ratelimitpolicy, self.op_slots), self.workers, "RLP"
        )
        say("operator: cold start with profiles, health and rate-limit policies")
        op = self.operator("operator-all").spawn()
        times = {}
        for plural in ("healthpolicies", "ratelimitpolicies", "serviceprofiles"):
            at = wait_done(self.api, plural, "bench-op-", self.count, 900, op)
            times[plural] = round(at - op.started_at, 1)
        self.results["load"] = {"ready_after_start_seconds": times}
        say(f"  all Ready (seconds after start): {times}")
        wait_quiet(op)
        return op

    def secrets(self, op: env.BenchOperator) -> None:
        """1,000 SecretBindings on 100 OpenBao keys: first full sync, then one refresh."""
        assert self.api is not None
        keys_per_ns = max(1, self.args.keys // self.ns)
        bao = self.bao.client()
        keys = sorted({objects.vault_key(s, self.ns, keys_per_ns) for s in self.op_slots})
        for key in keys:
            bao.secrets.kv.v2.create_or_update_secret(
                path=key, secret={"password": secrets.token_hex(8), "user": "app"}
            )
        refresh = self.args.refresh_seconds
        bindings = [
            objects.secretbinding(s, objects.vault_key(s, self.ns, keys_per_ns), f"{refresh}s")
            for s in self.op_slots
        ]
        objects.check(bindings[:1])
        before = Metrics.scrape(op.metrics_port).get_secret_reads()
        say(f"secrets: creating {len(bindings)} SecretBindings on {len(keys)} keys")
        start = time.monotonic()
        created = kubeapi.create_all(self.api, bindings, self.workers, "SecretBindings")
        synced_at = wait_done(self.api, "secretbindings", "bench-op-", self.count, 900, op)
        first_sync = synced_at - start
        after_first = Metrics.scrape(op.metrics_port).get_secret_reads()
        say(f"  all Synced {first_sync:.1f}s after the first create "
            f"({after_first - before:.0f} reads); waiting for one refresh of each")  # fmt: skip

        def last_syncs() -> dict[str, str]:
            return {
                f"{b['metadata']['namespace']}/{b['metadata']['name']}":
                    (b.get("status") or {}).get("lastSyncTime", "")
                for b in self.api.list(KINDS["secretbindings"][1])  # type: ignore[union-attr]
            }  # fmt: skip

        initial = last_syncs()
        refreshed: dict[str, str] = {}

        # A binding's first refresh is due 0.5-1.5 intervals after the read it was served
        # (the key's refresh grid, appinfra/providers/schedule.py).
        def all_refreshed() -> bool:
            refreshed.update(last_syncs())
            return all(v != initial.get(k) for k, v in refreshed.items())

        wait_for(all_refreshed, 1.5 * refresh + first_sync + 90,
                 "every SecretBinding to refresh once", 5.0)  # fmt: skip
        m = wait_quiet(op)
        until_refreshed = m.get_secret_reads() - after_first
        # Then exactly one refresh interval in the steady state: every binding refreshes
        # once in it, so the reads are what one refresh window costs.
        say(f"  every binding refreshed once ({until_refreshed:.0f} reads); "
            f"counting reads over the next {refresh}s")  # fmt: skip
        window_start = m.get_secret_reads()
        time.sleep(refresh)
        m = Metrics.scrape(op.metrics_port)
        errors = sum(
            v for (op_name, status), v in
            m.by("appinfra_backend_requests_total", "operation", "status").items()
            if status != "ok"
        )  # fmt: skip
        self.results["secrets"] = {
            "bindings": len(bindings),
            "keys": len(keys),
            "create_seconds": round(created, 2),
            "first_sync_seconds": round(first_sync, 2),
            "reads_first_sync": after_first - before,
            "reads_until_each_refreshed_once": until_refreshed,
            "reads_per_refresh_window": m.get_secret_reads() - window_start,
            "refresh_interval_seconds": refresh,
            # How far apart the bindings' syncs are: reads are shared only within a window.
            "first_sync_spread_seconds": spread(initial.values()),
            "refresh_spread_seconds": spread(refreshed.values()),
            "backend_errors": errors,
        }
        say(f"  reads in one refresh window: {m.get_secret_reads() - window_start:.0f}")

    def run(self) -> None:
        self.setup()
        self.plain()
        op = self.converge()
        if self.args.converge_only:
            op.stop()
            return
        try:
            self.latency(op)
        finally:
            op.stop()
        self.resync()
        op = self.load_everything()
        try:
            self.secrets(op)
            self.results["memory"] = op.memory()
            self.results["memory"]["watched"] = watched_sizes(self.api)  # type: ignore[arg-type]
            say(f"operator memory with {self.count} of each kind: {self.results['memory']}")
        finally:
            op.stop()


# --- output ----------------------------------------------------------------------------


def table(report: dict[str, Any]) -> str:
    r = report.get("results", {})
    m = report["machine"]
    cp = m.get("controlplane", {})
    n = report["parameters"]["count"]
    lines = [
        f"appinfra bench, {report['started']}: {m['cores']} cores ({m['cpu']}), "
        f"{m['memory_gib']} GiB RAM, Linux {m['kernel']}",
        f"  Python {m['python']}, kubernetes client {m['kubernetes_client']}, kopf {m['kopf']}; "
        f"Kubernetes {cp.get('kubernetes', '?')}, etcd {cp.get('etcd', '?')} "
        f"(bin/controlplane, loopback); APPINFRA_WORKERS={report['parameters']['workers']}"
        + (
            "; pinned: control plane on core 0, clients on core 1"
            if report["parameters"].get("pin")
            else "; shared CPU"
        ),
        f"  appinfra at {report.get('revision', '?')}"
        + (
            f" (operator/ changed during the run: {report['revision_end']} at the end)"
            if report.get("revision_end", report.get("revision")) != report.get("revision")
            else ""
        ),
        "",
    ]
    rows: list[tuple[str, str, str, str]] = []

    def row(name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        rows.append((name, value, target, "" if ok is None else ("yes" if ok else "NO")))

    if "plain" in r:
        row(f"converge {n} ServiceProfiles: plain client", f"{r['plain']['seconds']:.1f} s")
    if "converge" in r:
        c = r["converge"]
        row(f"converge {n} ServiceProfiles: operator (cold start)", f"{c['seconds']:.1f} s")
        if c.get("startup_seconds") is not None:
            row("  of which process start to /healthz", f"{c['startup_seconds']:.1f} s")
        row("  ratio operator / plain", f"{c['ratio']:.2f}", "<= 1.3", c["ratio"] <= 1.3)
        row("  API requests: operator / plain",
            f"{c['requests_total']:.0f} / {r['plain']['requests']}")  # fmt: skip
        served = [sum(r.get(f"apiserver_requests_{p}", {}).values()) for p in ("operator", "plain")]
        if all(served):
            row("  requests the API server served, all clients: operator / plain",
                f"{served[0]:.0f} / {served[1]:.0f}")  # fmt: skip
        cpu = [x["cpu_seconds"] for x in (c, r["plain"])]
        if all("kube-apiserver" in x for x in cpu):
            row("  kube-apiserver CPU: operator / plain",
                f"{cpu[0]['kube-apiserver']:.1f} / {cpu[1]['kube-apiserver']:.1f} s")  # fmt: skip
        if "operator" in cpu[0]:
            row("  operator CPU", f"{cpu[0]['operator']:.1f} s")
    if "resync" in r:
        s = r["resync"]
        row("writes, no-op restart resync", f"{s['writes_restart']:.0f}", "0",
            s["writes_restart"] == 0)  # fmt: skip
        row("writes, no-op periodic resync", f"{s['writes_periodic']:.0f}", "0",
            s["writes_periodic"] == 0)  # fmt: skip
    if "latency" in r:
        lat = r["latency"]
        row(f"spec change -> ConfigMap, p50 ({lat['samples']} changes)",
            f"{lat['p50_seconds'] * 1000:.0f} ms")  # fmt: skip
        row("spec change -> ConfigMap, p99", f"{lat['p99_seconds'] * 1000:.0f} ms", "< 1000 ms",
            lat["p99_seconds"] < 1)  # fmt: skip
    if "memory" in r:
        mem = r["memory"]
        row(f"operator peak RSS, {n} of each kind", f"{mem['VmHWM']:.0f} MiB", "< 150 MiB",
            mem["VmHWM"] < 150)  # fmt: skip
    if "secrets" in r:
        s = r["secrets"]
        row(f"{s['bindings']} SecretBindings on {s['keys']} keys: first full sync",
            f"{s['first_sync_seconds']:.1f} s")  # fmt: skip
        row("  backend reads, first sync", f"{s['reads_first_sync']:.0f}", f"= {s['keys']}",
            s["reads_first_sync"] == s["keys"])  # fmt: skip
        if "reads_until_each_refreshed_once" in s:
            row("  backend reads until every binding refreshed once",
                f"{s['reads_until_each_refreshed_once']:.0f}")  # fmt: skip
        row(f"  backend reads per refresh window ({s['refresh_interval_seconds']} s)",
            f"{s['reads_per_refresh_window']:.0f}", f"= {s['keys']}",
            s["reads_per_refresh_window"] == s["keys"])  # fmt: skip
    widths = [max(len(x[i]) for x in [*rows, ("metric", "value", "target", "ok")])
              for i in range(4)]  # fmt: skip
    header = ("metric", "value", "target", "ok")
    for cells in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    lines.append("")
    load = report.get("loadavg_start", (0, 0, 0))[0], report.get("loadavg_end", (0, 0, 0))[0]
    lines.append(
        f"total run time {report.get('total_seconds', 0):.0f} s; "
        f"1-min load average {load[0]:.1f} at start, {load[1]:.1f} at end"
    )
    if report.get("error"):
        lines.append(f"ERROR: {report['error']}")
    if "profile" in r:
        lines.append("")
        lines.append(f"profile of the operator during convergence ({r['profile']['samples']} "
                     "samples), top functions by own time:")  # fmt: skip
        for entry in r["profile"]["self"][:15]:
            lines.append(f"  {entry['percent']:5.1f}%  {entry['function']}")
        lines.append("appinfra functions by inclusive time (their own code and what they call):")
        for entry in r["profile"]["appinfra_inclusive"][:12]:
            lines.append(f"  {entry['percent']:5.1f}%  {entry['function']}")
        lines.append("by package (own time):")
        for entry in r["profile"]["packages"][:10]:
            lines.append(f"  {entry['percent']:5.1f}%  {entry['function']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--count", type=int, default=1000, help="resources of each kind")
    p.add_argument("--namespaces", type=int, default=10)
    p.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("APPINFRA_WORKERS", "16")),
        help="operator workers and plain-client threads (APPINFRA_WORKERS)",
    )
    p.add_argument("--latency-samples", type=int, default=100)
    p.add_argument("--keys", type=int, default=100, help="distinct OpenBao keys")
    p.add_argument(
        "--refresh-seconds",
        type=int,
        default=120,
        help="SecretBinding refreshInterval (the shared-read window is half of it)",
    )
    p.add_argument(
        "--resync-seconds",
        type=int,
        default=40,
        help="APPINFRA_RESYNC_SECONDS for the no-op resync phase",
    )
    p.add_argument(
        "--profile", action="store_true", help="sample the operator with py-spy while it converges"
    )
    p.add_argument(
        "--apiserver-profile", type=int, default=0, metavar="SECONDS",
        help="record kube-apiserver CPU profiles of SECONDS while the plain client and the "
        "operator converge (bench/results/apiserver-*.pprof; summarised with go tool pprof)",
    )  # fmt: skip
    p.add_argument(
        "--converge-only", action="store_true",
        help="stop after the convergence phase (plain client vs operator): for iterating",
    )  # fmt: skip
    p.add_argument(
        "--pin", action="store_true",
        help="control plane on core 0, the bench, plain client and operator on core 1 "
        "(sched_setaffinity): the converge ratio without the two competing for CPU",
    )  # fmt: skip
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    return p.parse_args(argv)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict[str, Any] = {}

    def work(workdir: Path, procs: env.Processes, stamp: str) -> None:
        Bench(args, workdir, procs, stamp, results).run()

    parameters = {k: v for k, v in vars(args).items() if k != "keep"}
    report = {"parameters": parameters, "results": results}
    return session.measured("", report, work, table, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
