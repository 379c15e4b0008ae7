"""Validation problems as a person reads them: a camelCase field path and an actionable message.

pydantic reports locations as tuples and messages in its own words ("Input
should be ..."); kubectl users think in JSON paths such as
`spec.limits.default.requests`. This module translates once, for the offline
validator, the operator's status messages and the configuration loader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from appinfra.api.base import RULE_ERROR

_PYDANTIC_SUBJECT = re.compile(r"^(Input|String|Value|List|Dictionary|Object) should ")
_ECHO_INPUT = {
    "bool_type",
    "enum",
    "greater_than",
    "greater_than_equal",
    "int_from_float",
    "int_parsing",
    "int_type",
    "less_than",
    "less_than_equal",
    "literal_error",
    "string_type",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an object, at one field."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def join_path(prefix: str, *parts: str | int) -> str:
    """Extend a JSON path: names join with '.', list indices go in brackets."""
    path = prefix
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


def problems_from(error: ValidationError, prefix: str = "") -> list[Problem]:
    """Every error in `error`, located under `prefix` (e.g. "spec")."""
    return [_problem(detail, prefix) for detail in error.errors()]


def _problem(detail: ErrorDetails, prefix: str) -> Problem:
    # A dict key error is located at (..., key, "[key]"): the key names itself.
    loc = [part for part in detail["loc"] if part != "[key]"]
    if detail["type"] == RULE_ERROR and (blamed := detail.get("ctx", {}).get("field")):
        loc.extend(blamed.split("."))
    return Problem(join_path(prefix, *loc), _message(detail))


def _message(detail: ErrorDetails) -> str:
    kind = detail["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling and case; see `kubectl explain`)"
    message = _PYDANTIC_SUBJECT.sub("must ", detail["msg"].removeprefix("Value error, "))
    message = message.replace(" after validation", "")
    if kind in _ECHO_INPUT and isinstance(detail["input"], str | int | float | bool):
        message += f" (got {detail['input']!r})"
    return message
