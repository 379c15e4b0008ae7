"""Offline and in-operator validation of appinfra objects, with problems a person can act on.

`appinfra validate -f PATH...` checks manifests before they reach a cluster:
the same models the operator uses, so what passes here passes the operator's
own checks, and the CRD's CEL rules come from the same `Rule` definitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from appinfra.api.base import ApiModel
from appinfra.api.formats import DNS_SUBDOMAIN
from appinfra.api.kinds import BY_KIND, NAME_RULE, Kind
from appinfra.api.names import API_VERSION, GROUP
from appinfra.api.problems import Problem, problems_from

SpecT = TypeVar("SpecT", bound=ApiModel)

_TOP_LEVEL_FIELDS = {"apiVersion", "kind", "metadata", "spec", "status"}
_YAML_SUFFIXES = {".yaml", ".yml"}


def parse_spec(
    kind: Kind[SpecT, Any], obj: Mapping[str, Any]
) -> tuple[SpecT | None, list[Problem]]:
    """Parse `obj["spec"]` with the kind's model: the model, or None and what is wrong.

    Strict on purpose: the API server would reject "3" for an integer or a
    snake_case field name, so the operator and the offline check do too.
    """
    return _parse(kind.spec_model, obj)


def _parse(model: type[SpecT], obj: Mapping[str, Any]) -> tuple[SpecT | None, list[Problem]]:
    spec = obj.get("spec")
    if spec is None:
        return None, [Problem("spec", "required field is missing")]
    if not isinstance(spec, Mapping):
        return None, [Problem("spec", "must be an object")]
    try:
        return model.model_validate(spec, strict=True, by_name=False), []
    except ValidationError as error:
        return None, problems_from(error, "spec")


def validate_object(obj: Mapping[str, Any]) -> list[Problem]:
    """Problems of one appinfra object (kind, apiVersion, metadata.name, unknown fields, spec)."""
    kind = BY_KIND.get(str(obj.get("kind")))
    if kind is None:
        return [Problem("kind", f"unknown kind in {GROUP}; known kinds: {', '.join(BY_KIND)}")]
    problems = []
    if obj.get("apiVersion") != API_VERSION:
        problems.append(
            Problem("apiVersion", f"must be {API_VERSION} (got {obj.get('apiVersion')!r})")
        )
    name = _name(obj)
    if name is None:
        problems.append(Problem("metadata.name", "required field is missing"))
    elif not DNS_SUBDOMAIN.accepts(name):
        problems.append(Problem("metadata.name", f"must be {DNS_SUBDOMAIN.explain}"))
    elif not NAME_RULE.holds(name):  # the CRD's root CEL rule, in the same words
        problems.append(Problem("metadata.name", NAME_RULE.message))
    problems.extend(
        Problem(str(field), "unknown field") for field in obj.keys() - _TOP_LEVEL_FIELDS
    )
    problems.extend(_parse(kind.spec_model, obj)[1])
    return problems


def validate_paths(paths: Iterable[str]) -> list[str]:
    """Validate YAML files and directories (their *.yaml and *.yml, not recursive).

    Returns one line per problem, `FILE: Kind/name: field.path: message`, or
    `FILE: message` for a problem with the file itself. Documents of kinds that
    are not appinfra's are skipped.
    """
    lines = []
    for path in yaml_files(paths):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except OSError as error:
            lines.append(f"{path}: cannot read: {error.strerror or error}")
            continue
        except yaml.YAMLError as error:
            lines.append(f"{path}: {_describe_yaml_error(error)}")
            continue
        for obj in objects(documents):
            if not isinstance(obj, Mapping):
                lines.append(f"{path}: document is not a mapping (a Kubernetes object)")
            elif _is_ours(obj):
                label = f"{obj.get('kind')}/{_name(obj) or '<unnamed>'}"
                lines.extend(f"{path}: {label}: {problem}" for problem in validate_object(obj))
    return lines


def yaml_files(paths: Iterable[str]) -> Iterator[Path]:
    """The given files, and the YAML files in the given directories (sorted)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(
                p for p in path.iterdir() if p.suffix in _YAML_SUFFIXES and p.is_file()
            )
        else:
            yield path


def objects(documents: Iterable[Any]) -> Iterator[Any]:
    """Top-level documents, with the items of a `kind: List` taken out; empty ones dropped."""
    for document in documents:
        if isinstance(document, Mapping) and document.get("kind") == "List":
            yield from objects(document.get("items") or [])
        elif document is not None:
            yield document


def _is_ours(obj: Mapping[str, Any]) -> bool:
    """One of our kinds (whatever its apiVersion says), or anything in our API group."""
    api_version = obj.get("apiVersion")
    in_group = isinstance(api_version, str) and api_version.split("/")[0] == GROUP
    return in_group or obj.get("kind") in BY_KIND


def _name(obj: Mapping[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return name if isinstance(name, str) and name else None


def _describe_yaml_error(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"invalid YAML{where}: {problem}"


__all__ = ["Problem", "parse_spec", "validate_object", "validate_paths"]
