"""Every condition reason the operator can write is explained in the README's
"Troubleshooting" section. The reasons are found by reading the source, so a new reason
fails this test until it is documented."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "appinfra"
# Where conditions are written, and where the reasons they carry come from (providers'
# error classes, the renderers' verdicts). api/ holds CEL reasons, which are not conditions.
SCANNED = ("controller", "handlers", "kube", "providers", "render")
# Calls that write a condition, and the position of their reason argument.
REASON_ARGUMENT = {"Condition": 2, "reject": 2, "failed": 0, "_sync_failed": 3}


def _strings(node: ast.AST) -> Iterator[str]:
    """String constants a reason expression can evaluate to (`"A" if x else "B"`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from _strings(node.body)
        yield from _strings(node.orelse)


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def reasons_in(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _name(node.func) in REASON_ARGUMENT:
            index = REASON_ARGUMENT[_name(node.func)]
            if len(node.args) > index:
                found.update(_strings(node.args[index]))
            for keyword in node.keywords:
                if keyword.arg == "reason":
                    found.update(_strings(keyword.value))
        # `Reason = Literal[...]`, `HealthReason = Literal[...]`: the reasons a dynamic
        # `exc.reason`, `verdict.reason` or `rendered.reason` can hold
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = [t.id for t in targets if isinstance(t, ast.Name)]
            value = node.value
            if any(n.endswith("Reason") for n in named) and isinstance(value, ast.Subscript):
                found.update(
                    c.value
                    for c in ast.walk(value.slice)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                )
            # a provider error's `reason = "..."` class attribute
            if named == ["reason"] and value is not None:
                found.update(_strings(value))
    return found


def source_reasons() -> set[str]:
    found: set[str] = set()
    for folder in SCANNED:
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            found |= reasons_in(ast.parse(path.read_text(), str(path)))
    return found


def troubleshooting() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^## Troubleshooting\n(.*?)(?=^## )", readme, re.S | re.M)
    assert match, "README.md has no '## Troubleshooting' section"
    return match.group(1)


def test_the_scan_finds_the_reasons_known_today() -> None:
    # If the scan silently stopped finding reasons, the next test would pass vacuously.
    assert source_reasons() >= {
        "Accepted", "Reconciled", "Invalid", "Conflicted", "TargetNotFound", "ApplyFailed",
        "APIError", "Synced", "BackendUnavailable", "Forbidden", "SecretNotFound",
        "TooManyKeys", "TemplateError", "Enforced", "PartiallyEnforced", "Unsupported",
        "Available", "RolloutInProgress", "Unavailable", "ProgressDeadlineExceeded",
    }  # fmt: skip


def test_the_scan_sees_a_new_reason() -> None:
    code = 'rt.reject(RES, body, "BrandNew", "m")\nself.failed("A" if x else "B", "m")'
    assert reasons_in(ast.parse(code)) == {"BrandNew", "A", "B"}


def test_every_reason_is_explained_in_troubleshooting() -> None:
    section = troubleshooting()
    missing = sorted(r for r in source_reasons() if f"`{r}`" not in section)
    assert not missing, f"README Troubleshooting does not explain: {', '.join(missing)}"


def test_every_reason_the_docs_mention_is_explained() -> None:
    """Reasons docs/api.md and the README name (`reason=X`, or a table row whose cells
    are a condition type and then a reason) are explained too."""
    text = (REPO / "docs" / "api.md").read_text() + (REPO / "README.md").read_text()
    named = set(re.findall(r"reason[=:] ?`?([A-Z]\w+)", text))
    conditions = "Accepted|Ready|Synced|Enforced|Healthy"
    named |= set(re.findall(rf"\| `(?:{conditions})` \| `([A-Z]\w+)` \|", text))
    assert {"Conflicted", "TooManyKeys"} <= named  # the patterns still match the docs
    section = troubleshooting()
    missing = sorted(r for r in named if f"`{r}`" not in section)
    assert not missing, f"README Troubleshooting does not explain: {', '.join(missing)}"
