"""The generated CRDs: fresh in crds/, structural, documented, with columns and CEL rules."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from appinfra import cli
from appinfra.api.base import ApiModel
from appinfra.api.crds import crd_manifests
from appinfra.api.kinds import KINDS, AnyKind
from appinfra.api.structural import SchemaConversionError, to_structural

REPO = Path(__file__).resolve().parents[2]
REGENERATE = "regenerate with `.venv/bin/python -m appinfra.api.crds crds/`"
MANIFESTS = {manifest["spec"]["names"]["kind"]: manifest for manifest in crd_manifests()}
# Keywords a structural schema node may carry (besides the x-kubernetes-* extensions).
STRUCTURAL_KEYWORDS = {
    "description", "type", "format", "enum", "default", "minimum", "maximum", "minLength",
    "maxLength", "pattern", "minItems", "maxItems", "minProperties", "maxProperties",
    "required", "properties", "additionalProperties", "items",
}  # fmt: skip
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = MANIFESTS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _nodes(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below and including `node`, with a readable path."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")
    if "items" in node:
        yield from _nodes(node["items"], f"{path}[]")


def _resolve(schema: dict[str, Any], json_path: str) -> dict[str, Any]:
    """The schema node a printer-column path such as .status.conditions[?(...)].status names."""
    node = schema
    for part in re.sub(r"\[[^\]]*\]", "[]", json_path).lstrip(".").split("."):
        node = node["properties"][part.removesuffix("[]")]
        if part.endswith("[]"):
            node = node["items"]
    return node


def test_crds_directory_is_not_stale() -> None:
    on_disk = {
        path.name: yaml.safe_load(path.read_text()) for path in (REPO / "crds").glob("*.yaml")
    }
    expected = {f"{m['metadata']['name']}.yaml": m for m in MANIFESTS.values()}
    assert on_disk.keys() == expected.keys(), f"crds/ has the wrong files; {REGENERATE}"
    for name, manifest in expected.items():
        assert on_disk[name] == manifest, f"crds/{name} is stale; {REGENERATE}"


def test_cli_prints_the_same_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["crds"]) == 0
    assert list(yaml.safe_load_all(capsys.readouterr().out)) == crd_manifests()


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.kind)
def test_crd_identity(kind: AnyKind) -> None:
    manifest = MANIFESTS[kind.kind]
    assert manifest["metadata"] == {
        "name": f"{kind.plural}.appinfra.dev",
        "labels": {"app.kubernetes.io/part-of": "appinfra"},
    }
    spec = manifest["spec"]
    assert spec["group"] == "appinfra.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == [kind.short_name]
    assert spec["names"]["categories"] == ["appinfra"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.kind)
def test_schema_is_structural(kind: AnyKind) -> None:
    for path, node in _nodes(_schema(kind.kind), kind.kind):
        extensions = {key for key in node if key.startswith("x-kubernetes-")}
        assert set(node) - extensions <= STRUCTURAL_KEYWORDS | {"anyOf"}, path
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node and node["anyOf"] == INT_OR_STRING, path
        else:
            assert "anyOf" not in node, path
            assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert not isinstance(node.get("additionalProperties"), bool), path
        assert not ("properties" in node and "additionalProperties" in node), path


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.kind)
def test_every_field_has_a_description(kind: AnyKind) -> None:
    undocumented = [
        f"{path}.{name}"
        for path, node in _nodes(_schema(kind.kind), kind.kind)
        for name, sub in node.get("properties", {}).items()
        if not sub.get("description") and f"{path}.{name}" != f"{kind.kind}.metadata"
    ]
    assert undocumented == []


COLUMNS = {
    "ServiceProfile": {"Replicas"},
    "SecretBinding": {"Store", "Target Secret", "Synced", "Last Sync"},
    "HealthPolicy": {"Mode", "Healthy", "Available"},
    "RateLimitPolicy": {"Enforcement", "Enforced"},
}


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.kind)
def test_printer_columns(kind: AnyKind) -> None:
    columns = MANIFESTS[kind.kind]["spec"]["versions"][0]["additionalPrinterColumns"]
    names = {column["name"] for column in columns}
    assert {"Target", "Ready", "Reason", "Age"} | COLUMNS[kind.kind] <= names
    for column in columns:
        if not column["jsonPath"].startswith(".metadata."):
            assert _resolve(_schema(kind.kind), column["jsonPath"]), column


def _models(model: type[ApiModel]) -> Iterator[type[ApiModel]]:
    yield model
    for field in model.model_fields.values():
        for candidate in _types_in(field.annotation):
            yield from _models(candidate)


def _types_in(annotation: Any) -> Iterator[type[ApiModel]]:
    if isinstance(annotation, type) and issubclass(annotation, ApiModel):
        yield annotation
    for arg in getattr(annotation, "__args__", ()):
        yield from _types_in(arg)


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.kind)
def test_every_model_rule_is_a_cel_rule_with_a_valid_field_path(kind: AnyKind) -> None:
    emitted = [
        (rule, node)
        for _, node in _nodes(_schema(kind.kind), kind.kind)
        for rule in node.get("x-kubernetes-validations", [])
    ]
    for rule, node in emitted:
        assert rule["message"] and rule["rule"]
        if "fieldPath" in rule:
            assert _resolve(node, rule["fieldPath"]), rule
    cel = {rule["rule"] for rule, _ in emitted}
    for model in _models(kind.spec_model):
        for rule in model.rules:
            assert rule.cel in cel, f"{model.__name__}: {rule.message}"


def test_map_keys_become_a_cel_rule() -> None:
    limits = _schema("RateLimitPolicy")["properties"]["spec"]["properties"]["limits"]
    (rule,) = limits["x-kubernetes-validations"]
    assert rule["rule"].startswith("self.all(k, size(k) <= 63 && k.matches(")
    assert rule["message"].startswith("every key must be a DNS label")


@pytest.mark.parametrize(
    "schema",
    [
        {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        {"type": "integer", "exclusiveMinimum": 0},
        {"description": "no type"},
        {"type": "object", "propertyNames": {"maxLength": 3}},
    ],
)
def test_converter_rejects_what_is_not_structural(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaConversionError):
        to_structural({"type": "object", "properties": {"x": schema}})
