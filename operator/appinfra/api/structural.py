"""Turn a pydantic JSON schema into a structural OpenAPI v3 schema for a CRD.

Why our own conversion: the maintained pieces we found do not fit. Python CRD
generators on PyPI (crds-generator, kubecrd/kubecrds) are small, unmaintained
and built on their own model classes or dataclasses rather than pydantic v2,
and they know nothing of CEL rules, int-or-string or preserve-unknown-fields;
the Go tools (openapi2crd, controller-gen) need Go types or a separate OpenAPI
document. The gap between pydantic's output and a structural schema is small
and fixed, so it is cheaper to own it than to adapt a tool:

- `$ref` into `$defs` is inlined (CRD schemas allow no references);
- `anyOf: [X, {type: null}]` from `X | None` becomes X: the API server drops
  null values of non-nullable fields, which is what an unset optional means;
- `additionalProperties: false` is dropped (closed is the structural default),
  `true` becomes `x-kubernetes-preserve-unknown-fields`;
- `const` becomes a one-value `enum`, `title` and `default: null` go away;
- map key constraints (`propertyNames`/`patternProperties`) become a CEL rule,
  since OpenAPI v3 in a CRD cannot constrain keys.

Anything else pydantic might emit (oneOf, numeric exclusiveMinimum, uniqueItems,
...) is rejected loudly here rather than producing a CRD the API server refuses.
"""

from __future__ import annotations

from typing import Any

JsonSchema = dict[str, Any]

_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]

_KEY_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "anyOf",
    "properties",
    "additionalProperties",
    "items",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
)
_RULE_KEY_ORDER = ("rule", "message", "fieldPath", "reason")


class SchemaConversionError(ValueError):
    """The pydantic schema uses a construct with no structural equivalent."""


def to_structural(schema: JsonSchema) -> JsonSchema:
    """Convert a model's `model_json_schema()` (with `$defs`) into a structural schema."""
    return _Converter(schema.get("$defs", {})).convert(schema, "")


class _Converter:
    def __init__(self, defs: dict[str, JsonSchema]) -> None:
        self._defs = defs

    def convert(self, node: JsonSchema, where: str) -> JsonSchema:
        node = self._flatten(node, where)
        out: JsonSchema = {}
        for key, value in node.items():
            if key in ("title", "$defs") or (key == "default" and value is None):
                continue
            if key == "additionalProperties":
                if value is True:
                    out["x-kubernetes-preserve-unknown-fields"] = True
                elif isinstance(value, dict):
                    out[key] = self.convert(value, f"{where}{{}}")
            elif key == "properties":
                # An empty map is dropped by the API server when it stores the CRD; emitting
                # it would make the stored CRD differ from the applied one, and a second
                # server-side-apply manager (helm after kubectl, Argo CD) would conflict.
                if value:
                    out[key] = {
                        name: self.convert(sub, f"{where}.{name}") for name, sub in value.items()
                    }
            elif key == "items":
                out[key] = self.convert(value, f"{where}[]")
            elif key == "const":
                out["enum"] = [value]
            elif key in ("patternProperties", "propertyNames"):
                continue  # handled together below
            elif key in _KEY_ORDER:
                out[key] = value
            else:
                raise SchemaConversionError(f"{where or '<root>'}: unsupported keyword {key!r}")
        if "patternProperties" in node or "propertyNames" in node:
            self._convert_key_constraints(node, out, where)
        if not (
            {"type", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields"}
            & out.keys()
        ):
            raise SchemaConversionError(f"{where or '<root>'}: node has no type")
        if "anyOf" in out and not (
            out.get("x-kubernetes-int-or-string") and out["anyOf"] == _INT_OR_STRING_ANY_OF
        ):
            raise SchemaConversionError(f"{where or '<root>'}: anyOf is not structural")
        return _ordered(out)

    def _flatten(self, node: JsonSchema, where: str) -> JsonSchema:
        """Resolve `$ref` and nullable `anyOf` into one node, outer keys winning."""
        if "$ref" in node:
            name = node["$ref"].removeprefix("#/$defs/")
            rest = {key: value for key, value in node.items() if key != "$ref"}
            return {**self._flatten(self._defs[name], where), **rest}
        if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
            branches = [branch for branch in node["anyOf"] if branch != {"type": "null"}]
            if len(branches) != 1:
                raise SchemaConversionError(f"{where or '<root>'}: anyOf with several branches")
            rest = {key: value for key, value in node.items() if key != "anyOf"}
            return {**self._flatten(branches[0], where), **rest}
        return node

    def _convert_key_constraints(self, node: JsonSchema, out: JsonSchema, where: str) -> None:
        patterns = list(node.get("patternProperties", {}).items())
        if len(patterns) != 1 or "'" in patterns[0][0]:
            raise SchemaConversionError(f"{where}: map keys need exactly one pattern without '")
        ((pattern, values),) = patterns
        keys = node.get("propertyNames", {})
        out["additionalProperties"] = self.convert(values, f"{where}{{}}")
        check = f"k.matches(r'{pattern}')"
        if "maxLength" in keys:
            check = f"size(k) <= {keys['maxLength']} && {check}"
        rule = {
            "rule": f"self.all(k, {check})",
            "message": f"every key must be {keys.get('description', f'matching {pattern}')}",
        }
        out["x-kubernetes-validations"] = [rule, *out.get("x-kubernetes-validations", [])]


def _ordered(node: JsonSchema) -> JsonSchema:
    """Keys in a fixed, readable order (pydantic sorts them alphabetically)."""
    out = {key: node[key] for key in _KEY_ORDER if key in node}
    if "x-kubernetes-validations" in out:
        out["x-kubernetes-validations"] = [
            {key: rule[key] for key in _RULE_KEY_ORDER if key in rule}
            for rule in out["x-kubernetes-validations"]
        ]
    return out
