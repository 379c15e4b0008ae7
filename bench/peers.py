"""`make bench-peers`: appinfra and External Secrets Operator (ESO) on the same secret-sync
work, one after the other, on one control plane and one OpenBao (audit device on).

For each tool in turn (the other stopped, its objects deleted): N bindings on K keys
(appinfra SecretBindings / ESO ExternalSecrets, two properties of one key each, the same
target Secrets and refresh interval), then: time to the first full sync, backend reads
(OpenBao's audit log) during it and during one steady refresh interval, the requests the
API server served (apiserver_request_total deltas), the writes in that steady (no-op)
interval, the tool's CPU seconds and peak RSS, and the rotation of every key. Prints a
side-by-side table and writes bench/results/peers-<timestamp>.json. See bench/README.md.

    .venv/bin/python bench/peers.py [--bindings 1000] [--keys 100] [--refresh-seconds 120]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support / tests.e2e.conftest: the e2e harness

import env  # noqa: E402
import kubeapi  # noqa: E402
import objects  # noqa: E402
import peertools  # noqa: E402
import promtext  # noqa: E402
import session  # noqa: E402
from kubeapi import Api, path  # noqa: E402
from run import delta, percentile  # noqa: E402
from session import say, wait_all, wait_for  # noqa: E402
from tests.support.servers import tool  # noqa: E402

PREFIX = "bench-peer"
SECRET_HASH = "appinfra.dev/secret-hash"  # appinfra/api/names.py SECRET_HASH
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION")
HEARTBEATS = ("leases", "nodes/status")


def writes(requests: dict[str, float]) -> dict[str, float]:
    """Write requests, heartbeats left out: Leases and Node status (the control plane's
    components and its node agent renew theirs on their own schedule)."""
    return {
        k: v for k, v in requests.items()
        if k.split(" ")[0] in WRITE_VERBS and k.split(" ")[1] not in HEARTBEATS
    }  # fmt: skip


def session_memory(sid: int) -> dict[str, float]:
    """VmHWM (peak RSS) of the session leader and summed over the session, MiB."""
    leader = total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(env._stat_fields(int(entry.name))[3]) != sid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    kib = int(line.split()[1]) / 1024
                    total += kib
                    if int(entry.name) == sid:
                        leader = kib
        except (OSError, IndexError, ValueError):
            continue
    return {"peak_rss_mib": round(leader, 1), "peak_rss_session_sum_mib": round(total, 1)}


class PeerBench:
    def __init__(
        self, args: argparse.Namespace, workdir: Path, procs: env.Processes, results: dict[str, Any]
    ):
        self.args = args
        self.workdir = workdir
        self.procs = procs
        self.slots = objects.slots(PREFIX, args.bindings, args.namespaces)
        self.keys_per_ns = max(1, args.keys // args.namespaces)
        self.key_of = {
            (s.namespace, s.name): objects.vault_key(s, args.namespaces, self.keys_per_ns)
            for s in self.slots
        }
        self.results = results  # the report's: what was measured survives a failed phase
        self.api: Api
        self.plane_pid = 0

    # --- setup ------------------------------------------------------------------------------

    def setup(self) -> None:
        say("starting the control plane")
        self.plane_pid, self.cluster = env.start_controlplane(self.workdir, self.procs)
        env.install_crds(self.cluster)
        files = peertools.eso_crd_files()
        say(f"applying ESO's {len(files)} CRDs (server-side: some are ~500 KB)")
        flags = [arg for f in files for arg in ("-f", str(f))]
        self.cluster.kubectl("apply", "--server-side", "--force-conflicts", *flags)
        self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=120s", *flags)
        self.api = api = Api(self.cluster.kubeconfig, pool=2 * self.args.workers)
        say("starting OpenBao (file audit device on)")
        self.bao = env.start_openbao(self.workdir, self.procs, audit=True)
        assert self.bao.audit_log is not None
        self.audit = peertools.AuditCounter(self.bao.audit_log)
        namespaces = sorted({s.namespace for s in self.slots})
        for ns in [env.SYSTEM_NAMESPACE, *namespaces]:
            api.create(objects.namespace(ns))
        api.create(env.token_secret(env.SYSTEM_NAMESPACE, self.bao.token))
        config = env.operator_config(self.bao, f"{PREFIX}-*")
        env.write_operator_config(self.workdir, config)
        # Consumer Deployments, not paused (a rollout must be able to finish), 0 replicas:
        # there are no nodes, so "rolled out" is the Deployment controller's view.
        deployments = []
        for s in self.slots:
            d = objects.deployment(s)
            d["spec"]["paused"] = False
            deployments.append(d)
        kubeapi.create_all(api, deployments, self.args.workers, "Deployments")
        self.values: dict[str, str] = {}
        self.write_keys()
        say(f"setup done: {len(self.slots)} Deployments, {len(self.values)} keys")

    def write_keys(self) -> dict[str, float]:
        """A new password in every key; returns when each write started (monotonic)."""
        client = self.bao.client()
        started = {}
        for key in sorted(set(self.key_of.values())):
            value = secrets.token_hex(8)
            started[key] = time.monotonic()
            client.secrets.kv.v2.create_or_update_secret(
                path=key, secret={"password": value, "user": "app"}
            )
            self.values[key] = value
        return started

    # --- what users see ---------------------------------------------------------------------

    def secret_values(self) -> dict[tuple[str, str], str]:
        """PASSWORD of every target Secret in the bench's namespaces."""
        out = {}
        for item in self.api.list(path("v1", "secrets")):
            meta = item["metadata"]
            if not meta["namespace"].startswith(PREFIX) or not meta["name"].endswith("-secret"):
                continue
            raw = (item.get("data") or {}).get("PASSWORD")
            if raw:
                out[(meta["namespace"], meta["name"][: -len("-secret")])] = base64.b64decode(
                    raw
                ).decode()
        return out

    def current(self) -> set[tuple[str, str]]:
        """Bindings whose Secret holds the current value of their key."""
        values = self.secret_values()
        return {b for b, key in self.key_of.items() if values.get(b) == self.values[key]}

    def wait_synced(self, alive: Callable[[], object], timeout: float) -> float:
        """Monotonic time every target Secret held its key's current value (one LIST of
        Secrets per poll: every 1 s, every 0.5 s once 90% are there)."""

        def done() -> int:
            alive()
            return len(self.current())

        return wait_all(done, len(self.key_of), "Secrets hold the current value", timeout, 1.0)

    def deployments(self) -> dict[tuple[str, str], tuple[str, bool]]:
        """Every consumer Deployment: its secret-hash annotation, and whether its rollout
        finished (as `kubectl rollout status` decides: the controller observed the
        generation and every replica is updated and available)."""
        out = {}
        for d in self.api.list(path("apps/v1", "deployments")):
            meta, spec, status = d["metadata"], d["spec"], d.get("status") or {}
            if not meta["namespace"].startswith(PREFIX):
                continue
            updated = status.get("updatedReplicas", 0)
            done = (
                status.get("observedGeneration", 0) >= meta["generation"]
                and updated >= spec.get("replicas", 1)
                and status.get("replicas", 0) <= updated
                and status.get("availableReplicas", 0) >= updated
            )
            annotations = spec["template"]["metadata"].get("annotations") or {}
            out[(meta["namespace"], meta["name"])] = (annotations.get(SECRET_HASH, ""), done)
        return out

    # --- one tool ---------------------------------------------------------------------------

    def cpu(self, sid: int) -> dict[str, float]:
        return env.cpu_by_process({"controlplane": self.plane_pid, "tool": sid})

    def measure(
        self, name: str, sid: int, alive: Callable[[], object], create: Callable[[], float],
        rollout: bool,
    ) -> dict[str, Any]:  # fmt: skip
        """First sync, one steady interval, rotation; the tool is running."""
        api, refresh = self.api, self.args.refresh_seconds
        out: dict[str, Any] = {}
        cpu0, req0, mark0 = self.cpu(sid), promtext.apiserver_requests(api), self.audit.mark()
        start = time.monotonic()
        out["create_seconds"] = round(create(), 2)
        synced_at = self.wait_synced(alive, 900)
        cpu1, req1, mark1 = self.cpu(sid), promtext.apiserver_requests(api), self.audit.mark()
        out["first_sync_seconds"] = round(synced_at - start, 2)
        out["first_sync_backend"] = self.audit.count(mark0, mark1)
        out["first_sync_requests"] = delta(req0, req1)
        out["first_sync_cpu"] = env.cpu_delta(cpu0, cpu1)
        say(f"  {name}: first full sync {synced_at - start:.1f}s, "
            f"{out['first_sync_backend']}")  # fmt: skip
        # Steady state: every binding has refreshed at least once after the first sync
        # (appinfra: 0.5-1.5 intervals after its read; ESO: one interval after its sync);
        # then exactly one interval, in which nothing changes: a no-op interval.
        settle = 1.5 * refresh
        say(f"  {name}: settling {settle:.0f}s, then counting one refresh interval ({refresh}s)")
        time.sleep(settle)
        alive()
        cpu2, req2, mark2 = self.cpu(sid), promtext.apiserver_requests(api), self.audit.mark()
        time.sleep(refresh)
        alive()
        cpu3, req3, mark3 = self.cpu(sid), promtext.apiserver_requests(api), self.audit.mark()
        out["steady_backend"] = self.audit.count(mark2, mark3)
        out["steady_requests"] = delta(req2, req3)
        out["steady_writes"] = writes(out["steady_requests"])
        out["steady_cpu"] = env.cpu_delta(cpu2, cpu3)
        say(f"  {name}: one refresh interval: {out['steady_backend']}, "
            f"writes {sum(out['steady_writes'].values()):.0f}")  # fmt: skip
        # Rotation: every key changes; each Secret's clock starts when its key's write
        # started. Polled every 0.5 s (LIST of Secrets, and of Deployments for appinfra).
        before = {b: h for b, (h, _) in self.deployments().items()} if rollout else {}
        started = self.write_keys()
        seen: dict[tuple[str, str], float] = {}
        rolled: dict[tuple[str, str], float] = {}
        annotated: dict[tuple[str, str], float] = {}
        deadline = time.monotonic() + 2 * refresh + 120
        while time.monotonic() < deadline and (
            len(seen) < len(self.key_of) or (rollout and len(rolled) < len(self.key_of))
        ):
            alive()
            now = time.monotonic()
            for b in self.current():
                seen.setdefault(b, now)
            if rollout:
                for b, (digest, done) in self.deployments().items():
                    if digest and digest != before.get(b):
                        annotated.setdefault(b, now)
                        if done:
                            rolled.setdefault(b, now)
            time.sleep(0.5)
        lat = [seen[b] - started[k] for b, k in self.key_of.items() if b in seen]
        out["rotation"] = {
            "keys": len(started),
            "secrets_updated": len(lat),
            "of": len(self.key_of),
            **_percentiles(lat),
        }
        if rollout:
            rl = [rolled[b] - started[k] for b, k in self.key_of.items() if b in rolled]
            out["rotation_rollout"] = {"rolled_out": len(rl), **_percentiles(rl)}
            an = [annotated[b] - started[k] for b, k in self.key_of.items() if b in annotated]
            out["rotation_template"] = {"updated": len(an), **_percentiles(an)}
        say(f"  {name}: rotation {out['rotation']}")
        cpu4 = self.cpu(sid)
        out["cpu_seconds_total"] = round(cpu4.get("tool", 0) - cpu0.get("tool", 0), 1)
        out["memory"] = session_memory(sid)
        return out

    def run_appinfra(self) -> None:
        say(f"appinfra: {len(self.slots)} SecretBindings on {len(self.values)} keys")
        op = env.BenchOperator(
            self.cluster, self.workdir, self.procs, "appinfra",
            APPINFRA_WORKERS=str(self.args.workers), APPINFRA_RESYNC_SECONDS="600",
        ).spawn()  # fmt: skip
        op.wait_healthy(120)
        refresh = f"{self.args.refresh_seconds}s"
        bindings = [objects.secretbinding(s, self.key_of[(s.namespace, s.name)], refresh)
                    for s in self.slots]  # fmt: skip
        objects.check(bindings[:1])

        def create() -> float:
            return kubeapi.create_all(self.api, bindings, self.args.workers, "SecretBindings")

        try:
            self.results["appinfra"] = self.measure(
                "appinfra", op.pid, op.healthy, create, rollout=True
            )
            say("appinfra: deleting its SecretBindings (the operator removes its finalizers)")
            self.delete_all(objects.API, "secretbindings")
        finally:
            op.stop()
        self.delete_secrets()

    def run_eso(self) -> None:
        say(f"ESO {peertools.eso_version()}: {len(self.slots)} ExternalSecrets")
        namespaces = sorted({s.namespace for s in self.slots})
        for ns in namespaces:
            self.api.create(env.token_secret(ns, self.bao.token))
            self.api.create(peertools.eso_store(ns, self.bao.address))
        eso = peertools.Eso(self.cluster.kubeconfig, self.workdir, self.args.workers)
        eso.start(self.procs)
        self.results["eso_flags"] = eso.flags

        def stores_ready() -> bool:
            eso.healthy()
            items = self.api.list(path(peertools.ESO_API, "secretstores"))
            return sum(
                any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (i.get("status") or {}).get("conditions", []))
                for i in items
            ) == len(namespaces)  # fmt: skip

        wait_for(stores_ready, 120, "ESO's SecretStores to be Ready")
        refresh = f"{self.args.refresh_seconds}s"
        externals = [
            peertools.external_secret(s.namespace, s.name, self.key_of[(s.namespace, s.name)],
                                      refresh)
            for s in self.slots
        ]  # fmt: skip

        def create() -> float:
            return kubeapi.create_all(self.api, externals, self.args.workers, "ExternalSecrets")

        try:
            self.results["eso"] = self.measure("ESO", eso.pid, eso.healthy, create, rollout=False)
        finally:
            eso.stop()

    def delete_all(self, version: str, plural: str) -> None:
        for ns in sorted({s.namespace for s in self.slots}):
            self.api.request("DELETE", path(version, plural, ns))  # deletecollection
        wait_for(
            lambda: not self.api.list(path(version, plural)), 300, f"{plural} to be deleted", 2.0
        )

    def delete_secrets(self) -> None:
        """The first tool's target Secrets go, so the second starts from nothing."""
        for ns in sorted({s.namespace for s in self.slots}):
            for item in self.api.list(path("v1", "secrets", ns)):
                if item["metadata"]["name"].endswith("-secret"):
                    with contextlib.suppress(kubeapi.ApiError):  # already collected (owner gone)
                        self.api.request(
                            "DELETE", path("v1", "secrets", ns, item["metadata"]["name"])
                        )
        wait_for(lambda: not self.secret_values(), 120, "the target Secrets to be deleted", 1.0)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_seconds": None, "p99_seconds": None, "max_seconds": None}
    return {
        "p50_seconds": round(percentile(values, 50), 2),
        "p99_seconds": round(percentile(values, 99), 2),
        "max_seconds": round(max(values), 2),
    }


# --- output ----------------------------------------------------------------------------------


def _ms_or_s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def table(report: dict[str, Any]) -> str:
    r, m, p = report.get("results", {}), report["machine"], report["parameters"]
    cp = m.get("controlplane", {})
    lines = [
        f"appinfra vs External Secrets Operator, {report['started']}: {m['cores']} cores "
        f"({m['cpu']}), {m['memory_gib']} GiB RAM; Kubernetes {cp.get('kubernetes', '?')}, "
        f"etcd {cp.get('etcd', '?')} (bin/controlplane), OpenBao {report.get('openbao', '?')}",
        f"  appinfra {m['appinfra']} at {report.get('revision', '?')} (Python {m['python']}, "
        f"kopf {m['kopf']}); ESO {report.get('eso_version', '?')} (bin/external-secrets)",
        f"  {p['bindings']} bindings on {p['keys']} keys ({p['namespaces']} namespaces), two "
        f"properties of one KV v2 key each, refreshInterval {p['refresh_seconds']}s",
        f"  concurrency: appinfra APPINFRA_WORKERS={p['workers']}; ESO "
        + " ".join(r.get("eso_flags", [])),
        "",
    ]
    a, e = r.get("appinfra", {}), r.get("eso", {})
    rows: list[tuple[str, str, str]] = []

    def row(name: str, fn: Callable[[dict[str, Any]], str]) -> None:
        def cell(x: dict[str, Any]) -> str:
            try:
                return fn(x) if x else "-"
            except (KeyError, TypeError):
                return "-"

        rows.append((name, cell(a), cell(e)))

    def backend(key: str) -> Callable[[dict[str, Any]], str]:
        def fmt(x: dict[str, Any]) -> str:
            b = x[key]
            return f"{b['kv_reads']} ({b['distinct_keys_read']} keys; {b['other_requests']} other)"

        return fmt

    row("time to first full sync (every Secret holds its value)",
        lambda x: f"{x['first_sync_seconds']:.1f} s")  # fmt: skip
    row("backend reads, first sync (OpenBao audit log)", backend("first_sync_backend"))
    row(f"backend reads, one steady refresh interval ({p['refresh_seconds']} s)",
        backend("steady_backend"))  # fmt: skip
    row("API requests served, first sync (all clients)",
        lambda x: f"{sum(x['first_sync_requests'].values()):.0f}")  # fmt: skip
    row("API requests served, one steady interval",
        lambda x: f"{sum(x['steady_requests'].values()):.0f}")  # fmt: skip
    row("API writes, one steady (no-op) interval (no heartbeats)",
        lambda x: f"{sum(writes(x['steady_requests']).values()):.0f}")  # fmt: skip
    row("tool CPU: first sync / steady interval / whole run",
        lambda x: f"{x['first_sync_cpu'].get('tool', 0):.1f} / "
        f"{x['steady_cpu'].get('tool', 0):.1f} / {x['cpu_seconds_total']:.1f} s")  # fmt: skip
    row("kube-apiserver CPU: first sync / steady interval",
        lambda x: f"{x['first_sync_cpu'].get('kube-apiserver', 0):.1f} / "
        f"{x['steady_cpu'].get('kube-apiserver', 0):.1f} s")  # fmt: skip
    row("tool peak RSS (VmHWM)", lambda x: f"{x['memory']['peak_rss_mib']:.0f} MiB")
    row(f"rotation of {p['keys']} keys: Secret updated, p50 / p99",
        lambda x: f"{_ms_or_s(x['rotation']['p50_seconds'])} / "
        f"{_ms_or_s(x['rotation']['p99_seconds'])} "
        f"({x['rotation']['secrets_updated']}/{x['rotation']['of']})")  # fmt: skip
    rows.append((
        "rotation: consumer pod template updated, p50 / p99",
        (f"{_ms_or_s(a['rotation_template']['p50_seconds'])} / "
         f"{_ms_or_s(a['rotation_template']['p99_seconds'])} "
         f"({a['rotation_template']['updated']}/{a['rotation']['of']})")
        if a.get("rotation_template") else "-",
        "no rollout (ESO does not restart consumers)",
    ))  # fmt: skip
    rows.append((
        "rotation: consumer Deployment rolled out, p50 / p99",
        (f"{_ms_or_s(a['rotation_rollout']['p50_seconds'])} / "
         f"{_ms_or_s(a['rotation_rollout']['p99_seconds'])} "
         f"({a['rotation_rollout']['rolled_out']}/{a['rotation']['of']})")
        if a.get("rotation_rollout") else "-",
        "no rollout (ESO does not restart consumers)",
    ))  # fmt: skip
    header = ("metric", "appinfra", f"ESO {report.get('eso_version', '')}")
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(3)]
    for cells in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    lines.append("")
    load = report.get("loadavg_start", (0, 0, 0))[0], report.get("loadavg_end", (0, 0, 0))[0]
    lines.append(f"total run time {report.get('total_seconds', 0):.0f} s; 1-min load average "
                 f"{load[0]:.1f} at start, {load[1]:.1f} at end")  # fmt: skip
    if report.get("error"):
        lines.append(f"ERROR: {report['error']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bindings", type=int, default=1000, help="bindings per tool")
    p.add_argument("--keys", type=int, default=100, help="distinct OpenBao keys")
    p.add_argument("--namespaces", type=int, default=10)
    p.add_argument(
        "--workers", type=int, default=int(os.environ.get("APPINFRA_WORKERS", "16")),
        help="APPINFRA_WORKERS for appinfra and --concurrent for ESO",
    )  # fmt: skip
    p.add_argument("--refresh-seconds", type=int, default=120, help="refreshInterval of both")
    p.add_argument("--only", choices=("appinfra", "eso"), help="run one tool (for iterating)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    p.add_argument("--table", type=Path, metavar="JSON", help="print the table of a past run")
    return p.parse_args(argv)


def openbao_version() -> str:
    try:
        out = subprocess.run([tool("bao"), "version"], capture_output=True, text=True,
                             timeout=30).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.split()[1] if len(out.split()) > 1 else "?"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return 0
    if args.only != "appinfra" and not peertools.ESO_BIN.exists():
        print("bin/external-secrets is missing: run `make bench-peers` (bench/build-eso.sh)",
              file=sys.stderr)  # fmt: skip
        return 2
    results: dict[str, Any] = {}

    def work(workdir: Path, procs: env.Processes, _stamp: str) -> None:
        bench = PeerBench(args, workdir, procs, results)
        bench.setup()
        if args.only in (None, "appinfra"):
            bench.run_appinfra()
        if args.only in (None, "eso"):
            bench.run_eso()

    report = {
        "eso_version": peertools.eso_version(),
        "openbao": openbao_version(),
        "parameters": {k: v for k, v in vars(args).items() if k not in ("keep", "table")},
        "results": results,
    }
    return session.measured("peers", report, work, table, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
