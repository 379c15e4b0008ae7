"""`make bench-scale`: how the operator's cost grows with the work.

For each count (default 1,000, 5,000 and 10,000 ServiceProfiles, each with every
section and its own paused Deployment), on a fresh control plane: create them, start
the operator cold, and measure

- start-up: process start to /healthz (its caches filled), and to its first finished
  reconcile (appinfra_reconcile_total leaves 0);
- converge: process start until one LIST shows every profile Ready for its generation;
- memory: peak RSS (VmHWM) once it is quiet, and RSS per profile: the peak over the
  count, and the growth from the previous point over the profiles added (the marginal
  cost, without the interpreter's fixed part).

Each point starts its own control plane (stopped before the next) so that no point
pays for another's objects. Writes bench/results/scale-<time>.json, prints a table.

    .venv/bin/python bench/scale.py [--counts 1000,5000,10000] [--keep]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support: the e2e harness

import env
import kubeapi
import objects
import session
from promtext import Metrics
from run import wait_done, wait_quiet
from session import say, wait_for

PER_NAMESPACE = 100  # profiles per namespace, at every scale


def point(count: int, workers: int, workdir: Path) -> dict[str, Any]:
    """One scale point on its own control plane; every process stopped on return."""
    procs = env.Processes()
    try:
        say(f"{count} ServiceProfiles: starting a control plane")
        _pid, cluster = env.start_controlplane(workdir, procs)
        env.install_crds(cluster)
        api = kubeapi.Api(cluster.kubeconfig, pool=2 * workers)
        # ServiceProfiles need no secret store: an operator configuration without one.
        env.write_operator_config(workdir, {"rateLimit": {"defaultEnforcement": "IngressNginx"}})
        slots = objects.slots("bench-op", count, max(1, count // PER_NAMESPACE))
        api.create(objects.namespace(env.SYSTEM_NAMESPACE))
        namespaces = sorted({s.namespace for s in slots})
        kubeapi.create_all(api, map(objects.namespace, namespaces), workers, "ns")
        profiles = [objects.serviceprofile(s) for s in slots]
        objects.check(profiles[:1])
        created = kubeapi.create_all(api, map(objects.deployment, slots), workers, "Deployments")
        created += kubeapi.create_all(api, profiles, workers, "ServiceProfiles")
        say(f"  {count} Deployments and ServiceProfiles created in {created:.0f}s; "
            "operator: cold start")  # fmt: skip
        op = env.BenchOperator(
            cluster, workdir, procs, f"operator-{count}",
            APPINFRA_WORKERS=str(workers), APPINFRA_RESYNC_SECONDS="3600",
        ).spawn()  # fmt: skip

        def reconciled() -> bool:
            op.healthy()  # raises if it died; notes when /healthz first answers
            try:
                return Metrics.scrape(op.metrics_port, timeout=2).reconciles("ServiceProfile") > 0
            except OSError:
                return False  # metrics not served yet

        first_reconcile = wait_for(reconciled, 600, "the operator's first reconcile", 0.1)
        ready_at = wait_done(api, "serviceprofiles", "bench-op-", count, max(900, count), op)
        wait_quiet(op)
        memory = op.memory()
        op.stop()
        api.close()
        result = {
            "count": count,
            "namespaces": len(namespaces),
            "startup_healthz_seconds": round(op.ready_at - op.started_at, 2),
            "startup_first_reconcile_seconds": round(first_reconcile - op.started_at, 2),
            "converge_seconds": round(ready_at - op.started_at, 1),
            "profiles_per_second": round(count / (ready_at - op.started_at), 1),
            "peak_rss_mib": round(memory["VmHWM"], 1),
            "rss_mib": round(memory["VmRSS"], 1),
        }
        say(f"  {result}")
        return result
    finally:
        procs.stop_all()


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"appinfra scale bench, {report['started']}: {m['cores']} cores ({m['cpu']}), "
        f"{m['memory_gib']} GiB RAM; APPINFRA_WORKERS={report['workers']}; "
        f"appinfra at {report['revision']}",
        "",
        "profiles  start to /healthz  to first reconcile  converge  profiles/s  peak RSS  "
        "KiB/profile  KiB/profile added",
    ]
    previous: dict[str, Any] | None = None
    for p in report["points"]:
        per = p["peak_rss_mib"] * 1024 / p["count"]
        added = ""
        if previous is not None:
            growth = (p["peak_rss_mib"] - previous["peak_rss_mib"]) * 1024
            added = f"{growth / (p['count'] - previous['count']):.1f}"
        lines.append(
            f"{p['count']:>8,}  {p['startup_healthz_seconds']:>15.1f}s  "
            f"{p['startup_first_reconcile_seconds']:>17.1f}s  {p['converge_seconds']:>7.1f}s  "
            f"{p['profiles_per_second']:>10.1f}  {p['peak_rss_mib']:>5.0f} MiB  "
            f"{per:>11.1f}  {added:>17}"
        )
        previous = p
    if report.get("error"):
        lines.append(f"ERROR: {report['error']}")
    lines.append(f"total run time {report.get('total_seconds', 0):.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--counts", default="1000,5000,10000", help="comma-separated profile counts")
    p.add_argument("--workers", type=int, default=int(os.environ.get("APPINFRA_WORKERS", "16")))
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    points: list[dict[str, Any]] = []

    def work(workdir: Path, _procs: env.Processes, _stamp: str) -> None:
        for count in counts:
            home = workdir / str(count)
            home.mkdir()
            points.append(point(count, args.workers, home))

    report = {"workers": args.workers, "points": points}
    return session.measured("scale", report, work, table, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
