"""`appinfra explain`, the pure part: fieldsV1 decoding, the model, and its rendering.

Nothing here talks to the API server (explain.py reads), so the decoding of
managedFields and both output formats are unit-tested from fixed inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from appinfra.api.names import KINDS, Obj, field_manager, target_annotation

MANAGERS = {field_manager(kind): kind for kind in KINDS}
"""appinfra's server-side apply field managers, to the kind that applies as each."""


# --- fieldsV1 -> readable paths ----------------------------------------------------------
def _name(key: str) -> str:
    """A field name as a path segment: dotted or slashed keys (annotations) quoted."""
    if key.replace("_", "").replace("-", "").isalnum():
        return "." + key
    return "[" + json.dumps(key) + "]"


def _item(selector: str) -> str:
    """`k:{"name":"app"}` -> `[name=app]`, `v:"x"` -> `["x"]`, `i:3` -> `[3]`."""
    kind, _, raw = selector.partition(":")
    if kind == "k":
        keys = json.loads(raw)
        return "[" + ",".join(f"{k}={_scalar(v)}" for k, v in keys.items()) + "]"
    if kind == "i":
        return f"[{raw}]"
    return "[" + json.dumps(json.loads(raw)) + "]"  # v: a set member, shown as JSON


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def decode_fields(fields: Obj, prefix: str = "") -> list[str]:
    """Every leaf a fieldsV1 set owns, as a path such as
    `spec.template.spec.containers[name=app].readinessProbe.httpGet.path`, in the set's
    order. A list item's key fields (`name` of `[name=app]`) are implied by the item and
    left out; an item or map owned with nothing beneath it is listed itself."""
    return list(_walk(fields, prefix, frozenset()))


def _walk(node: Obj, path: str, keys: frozenset[str]) -> Iterator[str]:
    children = [(k, v) for k, v in node.items() if k != "."]
    listed = False
    for key, sub in children:
        if key.startswith("f:"):
            name = key[2:]
            if name in keys and not sub:
                continue  # the key of the list item we are in: already in the path
            yield from _walk(sub or {}, path + _name(name), frozenset())
            listed = True
        elif key[:2] in ("k:", "v:", "i:"):
            item_keys = frozenset(json.loads(key[2:])) if key.startswith("k:") else frozenset()
            yield from _walk(sub or {}, path + _item(key), item_keys)
            listed = True
    if not listed and path:
        yield path.lstrip(".")


# --- the model ---------------------------------------------------------------------------
@dataclass
class OwnedFields:
    """The Deployment fields one appinfra field manager owns."""

    kind: str  # the appinfra kind applying as this manager
    manager: str
    resource: str | None  # which resource of the kind (the target annotation), if known
    paths: list[str]


@dataclass
class ConditionState:
    status: str  # "True", "False", "Unknown" (no condition yet)
    reason: str
    message: str


@dataclass
class Child:
    kind: str
    name: str
    state: str


@dataclass
class SecretSync:
    targetSecret: str | None
    lastSyncTime: str | None
    nextSyncTime: str | None


@dataclass
class Attached:
    kind: str
    name: str
    ready: ConditionState
    accepted: ConditionState
    conflicted: bool
    children: list[Child] = field(default_factory=list)
    secret: SecretSync | None = None


@dataclass
class Explanation:
    namespace: str
    deployment: str
    owned: list[OwnedFields]
    resources: list[Attached]
    notes: list[str] = field(default_factory=list)  # what could not be read, and why

    def to_json(self) -> Obj:
        """The `-o json` object (its shape is documented in README "Command line")."""
        out: Obj = asdict(self)
        for res in out["resources"]:
            if res["secret"] is None:
                del res["secret"]
        return out


def owned_fields(deployment: Obj) -> list[OwnedFields]:
    """The fields of `deployment` each appinfra field manager owns (main resource only,
    not status), in KINDS order, with the resource of that kind named by the
    Deployment's `appinfra.dev/<kind>` annotation."""
    meta = deployment.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    found: dict[str, list[str]] = {}
    for entry in meta.get("managedFields") or []:
        manager = entry.get("manager", "")
        if manager not in MANAGERS or entry.get("subresource"):
            continue
        paths = decode_fields(entry.get("fieldsV1") or {})
        found.setdefault(manager, []).extend(p for p in paths if p not in found.get(manager, []))
    return [
        OwnedFields(kind, field_manager(kind), annotations.get(target_annotation(kind)),
                    found[field_manager(kind)])
        for kind in KINDS
        if field_manager(kind) in found
    ]  # fmt: skip


def condition_state(body: Obj, type_: str) -> ConditionState:
    for cond in (body.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return ConditionState(
                str(cond.get("status", "Unknown")),
                str(cond.get("reason", "")),
                str(cond.get("message", "")),
            )
    return ConditionState("Unknown", "", "no condition yet: the operator has not reported")


# --- text rendering ----------------------------------------------------------------------
def _state(cond: ConditionState) -> str:
    return f"{cond.status} {cond.reason}".strip()


def render_text(exp: Explanation) -> str:
    """The terminal view: owned fields by resource, then each attached resource."""
    lines = [f"Deployment {exp.namespace}/{exp.deployment}", ""]
    lines.append("Fields appinfra owns:")
    if not exp.owned:
        lines.append("  (none)")
    for group in exp.owned:
        who = f"{group.kind}/{group.resource}" if group.resource else f"{group.kind} (unknown)"
        lines.append(f"  {who}  [field manager {group.manager}]")
        lines.extend(f"    {p}" for p in group.paths)
    lines += ["", "Resources attached:"]
    if not exp.resources:
        lines.append("  (none)")
    rows = [
        (f"{r.kind}/{r.name}", f"Ready={_state(r.ready)}", f"Accepted={_state(r.accepted)}", r)
        for r in exp.resources
    ]
    w0 = max((len(row[0]) for row in rows), default=0)
    w1 = max((len(row[1]) for row in rows), default=0)
    w2 = max((len(row[2]) for row in rows), default=0)
    for name, ready, accepted, res in rows:
        mark = "  CONFLICTED (loser: it does not act)" if res.conflicted else ""
        lines.append(f"  {name:<{w0}}  {ready:<{w1}}  {accepted:<{w2}}{mark}".rstrip())
        shown: set[str] = set()  # a Conflicted loser states one message in both
        for label, cond in (("Ready", res.ready), ("Accepted", res.accepted)):
            if cond.status != "True" and cond.message and cond.message not in shown:
                lines.append(f"      {label}: {cond.message}")
                shown.add(cond.message)
        if res.secret is not None:
            s = res.secret
            lines.append(
                f"      secret {s.targetSecret or '-'}  last sync {s.lastSyncTime or '-'}"
                f"  next sync {s.nextSyncTime or '-'}"
            )
        wc = max((len(f"{c.kind}/{c.name}") for c in res.children), default=0)
        for child in res.children:
            lines.append(f"      {f'{child.kind}/{child.name}':<{wc}}  {child.state}")
    if exp.notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in exp.notes)
    return "\n".join(lines) + "\n"


def render_json(exp: Explanation) -> str:
    return json.dumps(exp.to_json(), indent=2) + "\n"
