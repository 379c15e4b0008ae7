"""Argo CD health checks for the four kinds, run as Argo CD runs them: Lua 5.1 (Argo CD's
gopher-lua is 5.1), the resource as the global `obj`, the script's returned table read
as {status, message}, and no os/io/require to lean on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

REPO = Path(__file__).resolve().parents[2]
HEALTH = REPO / "charts" / "appinfra" / "argocd" / "health"
KINDS = ["ServiceProfile", "SecretBinding", "HealthPolicy", "RateLimitPolicy"]


def script(kind: str) -> str:
    return (HEALTH / f"appinfra.dev_{kind}.lua").read_text()


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    lua = lua51.LuaRuntime()
    # Argo CD's sandbox has the base, table, string and math libraries only.
    lua.execute("os = nil; io = nil; require = nil; dofile = nil; loadfile = nil; debug = nil")
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script(kind))
    return {key: result[key] for key in ("status", "message") if result[key] is not None}


def resource(
    kind: str,
    generation: int = 2,
    observed: int | None = 2,
    conditions: list[dict[str, Any]] | None = None,
    status: bool = True,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "payments", "namespace": "shop", "generation": generation},
        "spec": {},
    }
    if status:
        obj["status"] = {}
        if observed is not None:
            obj["status"]["observedGeneration"] = observed
        if conditions is not None:
            obj["status"]["conditions"] = conditions
    return obj


def cond(
    type_: str, status: str, reason: str = "", message: str = "", gen: int = 2
) -> dict[str, Any]:
    """A metav1.Condition as the operator writes it."""
    return {
        "type": type_, "status": status, "reason": reason, "message": message,
        "observedGeneration": gen, "lastTransitionTime": "2026-01-01T00:00:00Z",
    }  # fmt: skip


ACCEPTED = cond("Accepted", "True", "Accepted")
READY = cond("Ready", "True", "Reconciled", "every child is in place")

CASES: list[tuple[str, dict[str, Any], str, str | None]] = [
    # (id, resource arguments, expected status, expected message or None for "any")
    ("no-status", {"status": False}, "Progressing", None),
    ("empty-status", {"observed": None}, "Progressing", None),
    ("generation-behind", {"observed": 1, "conditions": [ACCEPTED, READY]}, "Progressing", None),
    ("no-conditions", {"conditions": None}, "Progressing", "Waiting for the Ready condition"),
    ("ready-missing", {"conditions": [ACCEPTED]}, "Progressing", "Waiting for the Ready condition"),
    (
        "ready-unknown",
        {"conditions": [ACCEPTED, cond("Ready", "Unknown", "Reconciling", "applying 3 objects")]},
        "Progressing",
        "applying 3 objects",
    ),
    (
        "ready-condition-stale",
        {"conditions": [ACCEPTED, cond("Ready", "True", "Reconciled", gen=1)]},
        "Progressing",
        "Waiting for the Ready condition",
    ),
    ("healthy", {"conditions": [ACCEPTED, READY]}, "Healthy", "every child is in place"),
    (
        "healthy-conditions-without-observed-generation",
        {"conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled"}]},
        "Healthy",
        "Ready=True (Reconciled)",
    ),
    (
        "accepted-false",
        {
            "conditions": [
                cond("Accepted", "False", "Conflicted", "HealthPolicy old-one already targets it"),
                cond("Ready", "False", "NotAccepted", "not accepted"),
            ]
        },
        "Degraded",
        "HealthPolicy old-one already targets it",
    ),
    (
        "ready-false",
        {"conditions": [ACCEPTED, cond("Ready", "False", "ChildFailed", "HPA rejected: x")]},
        "Degraded",
        "HPA rejected: x",
    ),
    (
        "ready-false-without-message",
        {"conditions": [ACCEPTED, cond("Ready", "False", "ChildFailed")]},
        "Degraded",
        "Ready=False (ChildFailed)",
    ),
    (
        "stale-failure-is-not-degraded",
        {"generation": 3, "observed": 3, "conditions": [cond("Accepted", "False", "Invalid")]},
        "Progressing",
        None,
    ),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("case", "args", "status", "message"), CASES, ids=[c[0] for c in CASES])
def test_health(
    kind: str, case: str, args: dict[str, Any], status: str, message: str | None
) -> None:
    result = health(kind, resource(kind, **args))
    assert result["status"] == status, result
    assert result.get("message"), "Argo CD shows the message: never leave it empty"
    if message is not None:
        assert result["message"] == message


def test_secretbinding_sync_failure_is_degraded() -> None:
    """The last good Secret stays (Ready may still be True), but the sync is failing."""
    synced = cond("Synced", "False", "BackendUnavailable", "vault-main: connection refused")
    obj = resource("SecretBinding", conditions=[ACCEPTED, synced, READY])
    assert health("SecretBinding", obj) == {
        "status": "Degraded",
        "message": "vault-main: connection refused",
    }
    synced_ok = cond("Synced", "True", "Synced", "3 keys")
    obj = resource("SecretBinding", conditions=[ACCEPTED, synced_ok, READY])
    assert health("SecretBinding", obj)["status"] == "Healthy"


def test_one_script_for_all_four_kinds() -> None:
    """One behaviour to keep right: a fix to one kind's script is a fix to all."""
    assert {script(kind) for kind in KINDS} == {script("ServiceProfile")}
    assert sorted(p.name for p in HEALTH.iterdir()) == sorted(
        f"appinfra.dev_{kind}.lua" for kind in KINDS
    )


def test_docs_argocd_cm_carries_the_same_scripts() -> None:
    doc = (REPO / "docs" / "argocd.md").read_text()
    blocks = [b.split("```", 1)[0] for b in doc.split("```yaml\n")[1:]]
    config_maps = [
        d for b in blocks for d in yaml.safe_load_all(b) if d and d.get("kind") == "ConfigMap"
    ]
    (argocd_cm,) = [c for c in config_maps if c["metadata"]["name"] == "argocd-cm"]
    for kind in KINDS:
        key = f"resource.customizations.health.appinfra.dev_{kind}"
        assert argocd_cm["data"][key] == script(kind), key
