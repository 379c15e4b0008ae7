"""docs/api.md: generated from the models, fresh, complete, and linked from the README."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appinfra.api import names
from appinfra.api.crds import crd_manifests
from appinfra.api.operatorconfig import OperatorConfig
from appinfra.api.reference import NOTE_SLOTS, read_notes, render_reference
from appinfra.api.structural import to_structural

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "api.md"
NOTES = REPO / "docs" / "api-notes"
REGENERATE = "regenerate with `.venv/bin/python -m appinfra.api.reference docs/api.md`"


def _paths(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every field below `node` with the reference's path notation (`.<name>` for a map
    value, `[]` for a list item); written here apart from the generator's own walk."""
    for name, sub in node.get("properties", {}).items():
        child = f"{path}.{name}" if path else name
        yield child, sub
        yield from _paths(sub, child)
    if isinstance(node.get("additionalProperties"), dict):
        yield from _paths(node["additionalProperties"], f"{path}.<name>")
    if "items" in node:
        yield from _paths(node["items"], f"{path}[]")


def _rules(node: dict[str, Any]) -> Iterator[dict[str, str]]:
    yield from node.get("x-kubernetes-validations", [])
    for sub in node.get("properties", {}).values():
        yield from _rules(sub)
    if isinstance(node.get("additionalProperties"), dict):
        yield from _rules(node["additionalProperties"])
    if "items" in node:
        yield from _rules(node["items"])


def _section(text: str, heading: str) -> str:
    """The text under `heading` up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = text.index(f"\n{heading}\n")
    higher = re.compile(f"\n#{{1,{len(level)}}} ")
    ends = [m.start() for m in higher.finditer(text[start + 1 :])]
    return text[start : start + 1 + ends[0]] if ends else text[start:]


def _row_paths(section: str) -> set[str]:
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


DOC_TEXT = DOC.read_text()
KIND_SCHEMAS = {
    m["spec"]["names"]["kind"]: m["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for m in crd_manifests()
}


def test_docs_api_md_is_not_stale() -> None:
    expected = render_reference(read_notes(NOTES))
    assert expected == DOC_TEXT, f"docs/api.md is stale; {REGENERATE}"


@pytest.mark.parametrize("kind", sorted(KIND_SCHEMAS))
def test_every_field_of_every_kind_has_a_row(kind: str) -> None:
    root = KIND_SCHEMAS[kind]
    for part in ("spec", "status"):
        rows = _row_paths(_section(DOC_TEXT, f"### {kind} {part}"))
        expected = {path for path, _ in _paths(root["properties"][part], part)}
        # A map value or list item of plain scalars without constraints has no row of its
        # own: its container's row says everything about it.
        missing = {
            path
            for path in expected - rows
            if not re.search(r"(\[\]|<name>)$", path) or _has_constraints(root, path)
        }
        assert not missing, f"{kind} {part}: no row for {sorted(missing)}"


def _has_constraints(root: dict[str, Any], path: str) -> bool:
    node = dict(_paths(root, ""))[path]
    return bool(set(node) & {"enum", "pattern", "minimum", "maximum", "properties"})


@pytest.mark.parametrize("kind", sorted(KIND_SCHEMAS))
def test_every_cel_rule_and_its_message_is_documented(kind: str) -> None:
    section = _section(DOC_TEXT, f"## {kind}")
    for rule in _rules(KIND_SCHEMAS[kind]):
        assert f"`{_cell(rule['rule'])}`" in section, f"{kind}: rule {rule['rule']!r} missing"
        assert _cell(rule["message"]).replace("<", "&lt;") in section


def test_every_operator_config_field_has_a_row() -> None:
    schema = to_structural(OperatorConfig.model_json_schema(by_alias=True, mode="validation"))
    rows = _row_paths(_section(DOC_TEXT, "## Operator configuration"))
    expected = {path for path, node in _paths(schema, "") if not path.endswith("[]")}
    assert expected <= rows, f"no row for {sorted(expected - rows)}"
    assert "set exactly one of vault or aws" in DOC_TEXT  # a model docstring, not a field's


def test_every_key_in_names_is_documented() -> None:
    keys = [
        value
        for name, value in vars(names).items()
        if name.isupper() and isinstance(value, str) and "/" in value and name != "API_VERSION"
    ]
    section = _section(DOC_TEXT, "## Labels, annotations and finalizers")
    assert len(keys) >= 10
    for key in keys:
        assert f"| `{key}` |" in section, f"{key} (api/names.py) is not in docs/api.md"
    for function in (names.target_annotation, names.applied_annotation, names.field_manager):
        assert f"| `{function('<Kind>')}` |" in section


def test_every_notes_file_is_included_verbatim() -> None:
    notes = read_notes(NOTES)
    assert set(notes) <= set(NOTE_SLOTS)
    for slot, text in notes.items():
        assert text.strip() in DOC_TEXT, f"docs/api-notes/{slot}.md is not in docs/api.md"


def test_a_notes_file_with_an_unknown_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"api-notes/limits\.md has no place"):
        render_reference({"limits": "text nobody would see"})


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to '-'."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.MULTILINE):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


def test_readme_links_the_reference_and_its_anchors_exist() -> None:
    links = re.findall(r"\]\(docs/api\.md(#[^)]*)?\)", (REPO / "README.md").read_text())
    assert links, "README.md must link docs/api.md"
    anchors = _anchors(DOC_TEXT)
    for anchor in filter(None, links):
        assert anchor[1:] in anchors, f"README links docs/api.md{anchor}, which has no heading"
