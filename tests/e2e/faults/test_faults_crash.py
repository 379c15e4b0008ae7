"""The operator is SIGKILLed mid-convergence; the control plane goes away and
comes back. Nothing is lost, nothing duplicated, nothing rewritten."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from tests.e2e.conftest import ControlPlane
from tests.e2e.test_serviceprofile import SP, profile
from tests.support.faults import (
    MANAGED,
    Launch,
    Obj,
    assert_alive,
    full_spec,
    idle_deployment,
    is_ready,
    listed,
    namespaces,
    versions,
)
from tests.support.kube import Cluster
from tests.support.objects import apply, get, wait_condition
from tests.support.servers import wait_until

CHILD_KINDS = ("ConfigMap", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget")


# --- 1. the operator is SIGKILLed mid-convergence -----------------------------------

CRASH_NS = "crash"
PROFILES = 200


def test_sigkill_during_convergence_loses_nothing_and_duplicates_nothing(
    kube: Cluster, launch: Launch
) -> None:
    namespaces(kube, CRASH_NS)
    names = [f"svc{i:03d}" for i in range(PROFILES)]
    objs: list[Obj] = []
    for i, name in enumerate(names):
        objs += [idle_deployment(CRASH_NS, name), profile(CRASH_NS, name, name, **full_spec(i))]
    apply(kube, *objs)  # one `kubectl apply` of a List of 400 objects
    # Started after the apply, so it has all 200 to do and the kill lands mid-way.
    first = launch("operator-crash-1", [CRASH_NS])

    def configmaps() -> int:
        return len(listed(kube, CRASH_NS, "configmaps", "-l", MANAGED))

    # Kill while the work is well under way: some profiles done, most not.
    wait_until(lambda: configmaps() >= 25, 120, "the first operator to make progress", 0.3)
    first.process.kill()
    assert first.process.proc is not None and first.process.proc.returncode == -9
    ready_at_kill = sum(map(is_ready, listed(kube, CRASH_NS, SP)))
    print(f"SIGKILL with {ready_at_kill} of {PROFILES} profiles Ready")
    assert ready_at_kill < PROFILES, "the kill came too late to test anything"

    second = launch("operator-crash-2", [CRASH_NS])
    seen: dict[str, int] = {}

    def all_ready() -> bool:
        seen["ready"] = sum(map(is_ready, listed(kube, CRASH_NS, SP)))
        return seen["ready"] == PROFILES

    try:
        wait_until(all_ready, 180, "every ServiceProfile to be Ready", 2)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {seen} of {PROFILES} Ready") from None

    profiles = {o["metadata"]["name"]: o for o in listed(kube, CRASH_NS, SP)}
    assert sorted(profiles) == names
    uids = {name: o["metadata"]["uid"] for name, o in profiles.items()}
    children = listed(kube, CRASH_NS, "configmaps,hpa,networkpolicies,pdb", "-l", MANAGED)
    by_kind: defaultdict[str, list[str]] = defaultdict(list)
    for child in children:
        meta = child["metadata"]
        by_kind[child["kind"]].append(meta["name"])
        owner = meta["labels"]["appinfra.dev/owner-name"]
        refs = [r for r in meta.get("ownerReferences", []) if r.get("controller")]
        assert meta["labels"]["appinfra.dev/owner-kind"] == "ServiceProfile"
        assert len(refs) == 1 and refs[0]["uid"] == uids.get(owner), (child["kind"], meta)
        expected = f"{owner}-config" if child["kind"] == "ConfigMap" else owner
        assert meta["name"] == expected
    for kind in CHILD_KINDS:
        assert len(by_kind[kind]) == PROFILES, (kind, len(by_kind[kind]))
        duplicated = [n for n, c in Counter(by_kind[kind]).items() if c > 1]
        assert not duplicated, (kind, duplicated)
    # Nothing unlabelled or stray next to them either.
    every_cm = {o["metadata"]["name"] for o in listed(kube, CRASH_NS, "configmaps")}
    assert every_cm == {f"{n}-config" for n in names} | {"kube-root-ca.crt"}

    for i, cm in enumerate(sorted(listed(kube, CRASH_NS, "configmaps", "-l", MANAGED),
                                  key=lambda o: o["metadata"]["name"])):  # fmt: skip
        assert cm["data"] == {"INDEX": str(i), "MODE": "steady", "app.yaml": f"index: {i}\n"}
    for dep in listed(kube, CRASH_NS, "deployments"):
        name = dep["metadata"]["name"]
        assert dep["metadata"]["annotations"]["appinfra.dev/serviceprofile"] == name
        pod = dep["spec"]["template"]
        assert "appinfra.dev/config-hash" in pod["metadata"]["annotations"]
        assert pod["spec"]["containers"][0]["envFrom"] == [
            {"configMapRef": {"name": f"{name}-config"}}
        ]
        assert dep["spec"]["replicas"] == 0
    assert_alive(second)


# --- 2. the control plane goes away and comes back --------------------------------

RESTART_NS = "restart"


def test_control_plane_restart_operator_reconnects_by_itself(
    plane: ControlPlane, kube: Cluster, launch: Launch
) -> None:
    namespaces(kube, RESTART_NS)
    op = launch("operator-restart", [RESTART_NS])
    for i, name in enumerate(("stable", "changed")):
        apply(kube, idle_deployment(RESTART_NS, name),
              profile(RESTART_NS, name, name, **full_spec(i)))  # fmt: skip
    for name in ("stable", "changed"):
        wait_condition(kube, SP, RESTART_NS, name, "Ready", "True", timeout=60)
    before = untouched_state(kube)
    assert len(before) == 6, before
    assert op.process.proc is not None
    pid = op.process.proc.pid

    plane.stop()  # SIGTERM to the supervisor: etcd data and certificates are kept
    assert not plane.kubeconfig.exists()
    time.sleep(15)
    assert_alive(op)
    plane.start()  # same data dir, same port: the operator's kubeconfig is still valid

    changed_spec = full_spec(1)
    changed_spec["config"]["data"]["MODE"] = "after-restart"
    changed_spec["disruption"] = {"minAvailable": 0}
    apply(kube, profile(RESTART_NS, "changed", "changed", **changed_spec))
    apply(kube, idle_deployment(RESTART_NS, "fresh"),
          profile(RESTART_NS, "fresh", "fresh", **full_spec(2)))  # fmt: skip
    wait_condition(kube, SP, RESTART_NS, "changed", "Ready", "True", timeout=120)
    wait_condition(kube, SP, RESTART_NS, "fresh", "Ready", "True", timeout=120)
    cm = get(kube, "configmap", RESTART_NS, "changed-config")
    assert cm is not None and cm["data"]["MODE"] == "after-restart"
    pdb = get(kube, "pdb", RESTART_NS, "changed")
    assert pdb is not None and pdb["spec"] == {
        "minAvailable": 0, "selector": {"matchLabels": {"app": "changed"}}
    }  # fmt: skip
    fresh = versions(kube, RESTART_NS, "configmaps,hpa,networkpolicies,pdb")
    assert {"ConfigMap/fresh-config", "HorizontalPodAutoscaler/fresh", "NetworkPolicy/fresh",
            "PodDisruptionBudget/fresh"} <= set(fresh)  # fmt: skip

    assert untouched_state(kube) == before  # nothing of the untouched profile was rewritten
    assert_alive(op)
    assert op.process.proc.pid == pid  # the same process throughout: it reconnected


def untouched_state(cluster: Cluster) -> dict[str, Any]:
    """What the operator could have written on profile "stable" and its children: the
    resourceVersion where only the operator writes (the profile and its status, ConfigMap,
    NetworkPolicy); for the Deployment, HPA and PDB, which kube-controller-manager keeps
    writing too (status, the revision annotation; busy, it may first get to them only
    after the restart): the generation, the spec, our annotations and the operator's own
    managedFields entries (an apply that changed anything would show in their time)."""
    state: dict[str, Any] = {}
    kinds = "serviceprofiles,configmaps,hpa,networkpolicies,pdb,deployments"
    for obj in listed(cluster, RESTART_NS, kinds, "--show-managed-fields"):
        meta = obj["metadata"]
        if meta["name"] not in ("stable", "stable-config"):
            continue
        key = f"{obj['kind']}/{meta['name']}"
        if obj["kind"] in ("ServiceProfile", "ConfigMap", "NetworkPolicy"):
            state[key] = meta["resourceVersion"]
            continue
        ours = [m for m in meta["managedFields"] if m["manager"].startswith("appinfra")]
        annotations = meta.get("annotations") or {}
        state[key] = {
            "generation": meta["generation"],
            "spec": obj["spec"],
            "annotations": {k: v for k, v in annotations.items() if "appinfra" in k},
            "managedFields": ours,
        }
    return state
