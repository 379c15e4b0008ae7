"""docs/api.md, generated from the models in this package, as crds.py generates crds/.

`python -m appinfra.api.reference docs/api.md` writes it; a unit test fails when the
copy in the repository is stale. Every field of the four kinds is read from the same
structural schema the CRDs carry (so the reference cannot promise what the API server
does not enforce), the operator configuration from its model, and the label, annotation
and finalizer keys from names.py with the docstrings written next to them.

What the models cannot say (why a bound exists, condition reasons, how an Override
probe is applied) is kept by hand in `api-notes/<slot>.md` next to the output file and
included verbatim at a fixed place; a notes file with an unknown slot name is an error,
so no hand-written text is silently dropped.

Pure apart from `main`: `render_reference(notes)` builds the text from the models.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from appinfra.api import names
from appinfra.api.crds import crd_manifest
from appinfra.api.kinds import CATEGORY, KINDS, AnyKind
from appinfra.api.operatorconfig import OperatorConfig
from appinfra.api.structural import JsonSchema, to_structural

NOTES_DIR = "api-notes"
GENERATOR = "python -m appinfra.api.reference docs/api.md"

# Where each hand-kept notes file goes: `api-notes/<slot>.md`.
NOTE_SLOTS = (
    "overview",  # after the introduction: facts about every kind
    *(kind.singular for kind in KINDS),  # at the end of that kind's section
    "operatorconfig",  # at the end of the operator configuration
    "names",  # after the table of keys
)


@dataclass(frozen=True)
class FieldRow:
    """One field of a schema, flattened for a table."""

    path: str
    type: str
    default: str
    constraints: str
    description: str


@dataclass(frozen=True)
class RuleRow:
    """One CEL rule (x-kubernetes-validations entry) and the object it sits on."""

    on: str
    field: str
    rule: str
    message: str


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (GitHub reads `\\|` as a literal bar, even in
    code spans)."""
    return text.replace("|", "\\|").replace("\n", " ")


def _text(text: str) -> str:
    """Prose from a model: a <name> outside code spans would be read as an HTML tag and
    vanish, so it is escaped there (inside backticks it shows as written)."""
    parts = text.split("`")
    return "`".join(
        part if odd else part.replace("<", "&lt;")
        for odd, part in ((index % 2 == 1, part) for index, part in enumerate(parts))
    )


def _code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def _type(node: JsonSchema) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "integer or string"
    if node.get("x-kubernetes-preserve-unknown-fields"):
        # With fields of its own (a core/v1 Probe), the rest is passed through unchecked.
        return "object (other fields kept)" if node.get("properties") else "object (free-form)"
    kind = node.get("type", "")
    if kind == "array":
        item = _type(node.get("items", {}))
        list_type = node.get("x-kubernetes-list-type")
        if list_type == "map":
            keys = ", ".join(node.get("x-kubernetes-list-map-keys", []))
            return f"list of {item}, keyed by {keys}"
        if list_type == "set":
            return f"list of {item}, unique"
        return f"list of {item}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of string to {_type(node['additionalProperties'])}"
    if kind == "string" and node.get("format"):
        return f"string ({node['format']})"
    return str(kind)


_SINGULAR = {"characters": "character", "items": "item", "entries": "entry"}


def _number(value: int | float) -> str:
    return f"{value:,}" if abs(value) >= 10_000 else str(value)


def _constraints(node: JsonSchema) -> str:
    parts: list[str] = []
    if "enum" in node:
        parts.append("one of " + ", ".join(_code(json.dumps(value)) for value in node["enum"]))
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None and high is not None:
        parts.append(f"{_number(low)} to {_number(high)}")
    elif low is not None:
        parts.append(f"at least {_number(low)}")
    elif high is not None:
        parts.append(f"at most {_number(high)}")
    for key, what in (
        ("minLength", "characters"),
        ("maxLength", "characters"),
        ("minItems", "items"),
        ("maxItems", "items"),
        ("minProperties", "entries"),
        ("maxProperties", "entries"),
    ):
        if key in node:
            bound = "at least" if key.startswith("min") else "at most"
            parts.append(
                f"{bound} {_number(node[key])} {_SINGULAR[what] if node[key] == 1 else what}"
            )
    if "pattern" in node:
        parts.append(f"pattern {_code(node['pattern'])}")
    return "; ".join(parts)


def _default(node: JsonSchema, required: bool) -> str:
    if required:
        return "required"
    if "default" in node:
        return _code(json.dumps(node["default"]))
    return ""


def walk(node: JsonSchema, path: str, required: bool = False) -> Iterator[FieldRow]:
    """A row for `node` and rows for every field below it."""
    yield FieldRow(
        path,
        _type(node),
        _default(node, required),
        _constraints(node),
        node.get("description", ""),
    )
    yield from walk_below(node, path)


def walk_below(node: JsonSchema, path: str) -> Iterator[FieldRow]:
    """Rows for the fields below `node`: properties, map values (`<name>`) and list items
    (`[]`). A value or item gets its own row only when it says more than its container's
    row: fields of its own, constraints, or a description."""
    needed = set(node.get("required", []))
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}" if path else name, name in needed)
    values = node.get("additionalProperties")
    if isinstance(values, dict) and _says_more(values, node):
        yield from walk(values, f"{path}.<name>")
    if "items" in node and _says_more(node["items"], node):
        yield from walk(node["items"], f"{path}[]")


def _says_more(inner: JsonSchema, outer: JsonSchema) -> bool:
    return bool(
        inner.get("properties")
        or "items" in inner
        or _constraints(inner)
        or inner.get("description", outer.get("description")) != outer.get("description")
    )


def rules(node: JsonSchema, path: str) -> Iterator[RuleRow]:
    """Every CEL rule in `node` and below, with the object it is declared on."""
    for rule in node.get("x-kubernetes-validations", []):
        field = rule.get("fieldPath", "").lstrip(".")
        yield RuleRow(path or "(the object)", field, rule["rule"], rule["message"])
    for name, sub in node.get("properties", {}).items():
        yield from rules(sub, f"{path}.{name}" if path else name)
    if isinstance(node.get("additionalProperties"), dict):
        yield from rules(node["additionalProperties"], f"{path}.<name>")
    if "items" in node:
        yield from rules(node["items"], f"{path}[]")


def field_table(rows: Iterator[FieldRow]) -> list[str]:
    lines = ["| Field | Type | Default | Constraints | Description |", "|---|---|---|---|---|"]
    for row in rows:
        cells = (_code(row.path), row.type, row.default, row.constraints, _text(row.description))
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return lines


CRD_RULES = (
    "Rules (CEL in the CRD, checked by the API server on create and update, and by "
    "`appinfra validate` offline, with the same message):"
)


def rule_table(rows: list[RuleRow], intro: str = CRD_RULES) -> list[str]:
    if not rows:
        return []
    lines = [
        intro,
        "",
        "| On | Field blamed | Rule | Message |",
        "|---|---|---|---|",
    ]
    for row in rows:
        cells = (_code(row.on), _code(row.field) if row.field else "", _code(row.rule))
        lines.append("| " + " | ".join(_cell(c) for c in (*cells, _text(row.message))) + " |")
    return lines


def _kind_section(kind: AnyKind) -> list[str]:
    manifest = crd_manifest(kind)
    version = manifest["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    lines = [
        f"## {kind.kind}",
        "",
        _text(kind.description),
        "",
        f"`apiVersion: {names.API_VERSION}`, `kind: {kind.kind}`, namespaced; plural "
        f"`{kind.plural}`, short name `{kind.short_name}`, category `{CATEGORY}` "
        f"(`kubectl get {CATEGORY}` lists all four kinds). CRD: `crds/{kind.crd_name}.yaml`.",
        "",
        "`kubectl get` columns:",
        "",
        "| Column | Shows | From |",
        "|---|---|---|",
    ]
    for column in version["additionalPrinterColumns"]:
        wide = " (with `-o wide`)" if column.get("priority") else ""
        lines.append(
            f"| {column['name']} | {_cell(column['description'])}{wide} "
            f"| {_cell(_code(column['jsonPath']))} |"
        )
    # Rules on the object itself (the name bound) are listed with the spec's.
    object_rules = list(rules({"x-kubernetes-validations": root["x-kubernetes-validations"]}, ""))
    for part in ("spec", "status"):
        schema = root["properties"][part]
        lines += ["", f"### {kind.kind} {part}", "", _text(schema.get("description", "")), ""]
        lines += field_table(walk_below(schema, part))
        part_rules = (object_rules if part == "spec" else []) + list(rules(schema, part))
        if part_rules:
            lines += ["", *rule_table(part_rules)]
    return lines


def _operator_config_section() -> list[str]:
    schema = to_structural(OperatorConfig.model_json_schema(by_alias=True, mode="validation"))
    return [
        "## Operator configuration",
        "",
        f"{schema['description']} A YAML file, given to `appinfra run --config FILE` (the "
        "Helm chart renders it from its values into a ConfigMap the operator re-reads on "
        "change). Objects are closed: an unknown key is an error naming its path.",
        "",
        *field_table(walk_below(schema, "")),
        "",
        *rule_table(
            list(rules(schema, "")),
            "Map keys, checked when the operator loads the file (an invalid file is refused "
            "with every problem named), written as CEL as a CRD would carry them:",
        ),
    ]


@dataclass(frozen=True)
class NameEntry:
    key: str
    value: str
    description: str


def name_entries() -> list[NameEntry]:
    """The label, annotation and finalizer keys of names.py with the docstring under each
    (or a function's docstring, called with a placeholder kind), in source order."""
    tree = ast.parse(inspect.getsource(names))
    entries: list[NameEntry] = []
    body = tree.body
    for index, statement in enumerate(body):
        following = body[index + 1] if index + 1 < len(body) else None
        doc = (
            following.value.value
            if isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
            else ""
        )
        if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
            name = statement.targets[0].id
            value = getattr(names, name)
            # Only keys appinfra puts on objects: strings of the form prefix/name or managed-by.
            if isinstance(value, str) and "/" in value and name not in ("API_VERSION",):
                entries.append(NameEntry(name, value, " ".join(doc.split())))
        elif isinstance(statement, ast.FunctionDef) and statement.name != "__getattr__":
            function = getattr(names, statement.name)
            value = function("<Kind>")
            entries.append(
                NameEntry(
                    f"{statement.name}(kind)", value, " ".join((function.__doc__ or "").split())
                )
            )
    return entries


def _names_section() -> list[str]:
    lines = [
        "## Labels, annotations and finalizers",
        "",
        f"Declared once in `operator/appinfra/api/names.py` (group `{names.GROUP}`, version "
        f"`{names.VERSION}`); renaming one is an API change. `<kind>` is the kind in "
        "lowercase, e.g. `serviceprofile`.",
        "",
        "| Key | Meaning | In names.py |",
        "|---|---|---|",
    ]
    for entry in name_entries():
        lines.append(
            f"| {_cell(_code(entry.value))} | {_cell(_text(entry.description))} | `{entry.key}` |"
        )
    return lines


def render_reference(notes: Mapping[str, str]) -> str:
    """The whole of docs/api.md; `notes` maps a slot (see NOTE_SLOTS) to its Markdown."""
    unknown = sorted(set(notes) - set(NOTE_SLOTS))
    if unknown:
        raise ValueError(
            f"{NOTES_DIR}/{unknown[0]}.md has no place in the reference; "
            f"name it one of: {', '.join(NOTE_SLOTS)}"
        )

    def note(slot: str) -> list[str]:
        text = notes.get(slot, "").strip()
        return ["", text] if text else []

    lines = [
        "# API reference",
        "",
        f"<!-- Generated by `{GENERATOR}` from operator/appinfra/api/. Do not edit: change "
        f"the models' descriptions, or the hand-kept notes in docs/{NOTES_DIR}/. -->",
        "",
        f"appinfra's public contract: the four kinds of `{names.API_VERSION}`, the operator "
        "configuration file and the keys appinfra puts on objects. Types, defaults, bounds "
        "and rules are those of the generated CRDs (`crds/`), which the API server enforces "
        "and `appinfra validate` checks offline with the same messages. Paths are relative "
        "to the object; `<name>` stands for a map key and `[]` for a list item.",
        "",
        "- " + "\n- ".join(f"[{kind.kind}](#{kind.kind.lower()})" for kind in KINDS),
        "- [Operator configuration](#operator-configuration)",
        "- [Labels, annotations and finalizers](#labels-annotations-and-finalizers)",
        *note("overview"),
    ]
    for kind in KINDS:
        lines += ["", *_kind_section(kind), *note(kind.singular)]
    lines += ["", *_operator_config_section(), *note("operatorconfig")]
    lines += ["", *_names_section(), *note("names")]
    return "\n".join(lines) + "\n"


def read_notes(directory: Path) -> dict[str, str]:
    """Every `<slot>.md` in `directory` (none if it does not exist)."""
    return {path.stem: path.read_text() for path in sorted(directory.glob("*.md"))}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m appinfra.api.reference docs/api.md", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.write_text(render_reference(read_notes(out.parent / NOTES_DIR)))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
