"""The Argo CD health check for the four kinds, run where Argo CD runs it: gopher-lua.

`bin/luahealth` (tests/luahealth, a Go module pinned to the gopher-lua and gopher-json
versions Argo CD pins) loads the script the way Argo CD's controller loads one from
argocd-cm: only the package, base and table libraries (no string, no math), the resource
as the global `obj` with JSON numbers as Lua numbers, the returned table encoded to JSON
and read as {status, message}, and a status outside Argo CD's set turned into Unknown.
The chart holds one script; docs/argocd.md renders it under the four kinds' keys.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "charts" / "appinfra" / "argocd" / "health.lua"
LUAHEALTH = REPO / "bin" / "luahealth"
KINDS = ["ServiceProfile", "SecretBinding", "HealthPolicy", "RateLimitPolicy"]


@pytest.fixture(scope="module", autouse=True)
def luahealth() -> None:
    """Build bin/luahealth if its sources changed (seconds; skipped when up to date)."""
    subprocess.run([REPO / "hack" / "build-gotool.sh", "luahealth"], check=True, timeout=600)


def run_all(objects: list[dict[str, Any]], script: Path = SCRIPT) -> list[dict[str, str]]:
    """Each object's health as Argo CD computes it, one fresh Lua state per object."""
    out = subprocess.run(
        [LUAHEALTH, script],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    results: list[dict[str, str]] = json.loads(out.stdout)
    return results


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    (result,) = run_all([obj])
    assert "error" not in result, result["error"]
    return result


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


def test_the_runner_fails_a_script_that_needs_a_library_argo_cd_leaves_out(
    tmp_path: Path,
) -> None:
    """The point of running gopher-lua as Argo CD configures it: `string` is not there,
    although stock Lua (and lupa, which these tests used before) has it."""
    script = tmp_path / "health.lua"
    script.write_text('return {status = string.lower("Healthy"), message = "x"}\n')
    (result,) = run_all([resource("HealthPolicy")], script)
    assert "error" in result
    script.write_text('return {status = "Fine", message = "x"}\n')
    assert run_all([resource("HealthPolicy")], script) == [
        {"status": "Unknown", "message": "Lua returned an invalid health status"}
    ]


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


def test_one_script_in_the_chart() -> None:
    """One behaviour to keep right: a fix to the script is a fix for all four kinds."""
    assert sorted(p.name for p in SCRIPT.parent.iterdir()) == ["health.lua"]


def test_docs_argocd_cm_carries_the_script_under_each_kind() -> None:
    doc = (REPO / "docs" / "argocd.md").read_text()
    blocks = [b.split("```", 1)[0] for b in doc.split("```yaml\n")[1:]]
    config_maps = [
        d for b in blocks for d in yaml.safe_load_all(b) if d and d.get("kind") == "ConfigMap"
    ]
    (argocd_cm,) = [c for c in config_maps if c["metadata"]["name"] == "argocd-cm"]
    health_keys = {k for k in argocd_cm["data"] if k.startswith("resource.customizations.health.")}
    assert health_keys == {f"resource.customizations.health.appinfra.dev_{k}" for k in KINDS}
    for key in health_keys:
        assert argocd_cm["data"][key] == SCRIPT.read_text(), key
    assert "--rawfile lua charts/appinfra/argocd/health.lua" in doc
