"""Value formats and list shapes shared by the models, each defined once for Python and the CRD.

A `Format` validates in Python with the same anchored regular expression it
publishes as the OpenAPI `pattern`, so `appinfra validate` and the API server
accept the same strings, and it explains itself in words a person can act on
instead of echoing the regular expression. Patterns stay within the common
subset of Python `re`, Go RE2 (the API server) and ECMA-262.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, PlainValidator, WithJsonSchema
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

FORMAT_ERROR = "format"
DUPLICATE_ERROR = "duplicate"


def _always(_: str) -> bool:
    return True


class _CheckedMetadata:
    """Annotated metadata that checks a value after pydantic's own validation and adds the
    matching keywords to the JSON schema: one definition for both enforcers."""

    def check(self, value: Any) -> None:
        raise NotImplementedError

    def schema_keywords(self) -> dict[str, Any]:
        raise NotImplementedError

    def _validate(self, value: Any) -> Any:
        self.check(value)
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self._validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(self.schema_keywords())
        return json_schema


@dataclass(frozen=True)
class Format(_CheckedMetadata):
    """Annotated metadata for a string: regex and length in both Python and the schema.

    `extra_check` is for what a regular expression cannot say well (a CIDR's
    prefix length, say); the schema then carries only the looser pattern.
    """

    pattern: str
    max_length: int
    explain: str
    extra_check: Callable[[str], bool] = field(default=_always)

    def __post_init__(self) -> None:
        if not (self.pattern.startswith("^") and self.pattern.endswith("$")):
            raise ValueError(f"pattern {self.pattern!r} must be anchored with ^ and $")

    def accepts(self, value: str) -> bool:
        return (
            len(value) <= self.max_length
            and re.fullmatch(self.pattern, value) is not None
            and self.extra_check(value)
        )

    def check(self, value: str) -> None:
        if not self.accepts(value):
            raise PydanticCustomError(
                FORMAT_ERROR,
                "must be {explain} (got {got})",
                {"explain": self.explain, "got": repr(value)},
            )

    def schema_keywords(self) -> dict[str, Any]:
        return {"description": self.explain, "pattern": self.pattern, "maxLength": self.max_length}


def _is_ip_or_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


DNS_LABEL = Format(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    63,
    "a DNS label: lowercase letters, digits and '-', starting and ending with a letter "
    "or digit, at most 63 characters",
)
DNS_SUBDOMAIN = Format(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    253,
    "a DNS subdomain name: lowercase letters, digits, '-' and '.', starting and ending "
    "with a letter or digit, at most 253 characters",
)
OPTIONAL_DNS_SUBDOMAIN = Format(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$",
    253,
    "empty or a DNS subdomain name: lowercase letters, digits, '-' and '.', starting and "
    "ending with a letter or digit, at most 253 characters",
)
DATA_KEY = Format(
    r"^[-._a-zA-Z0-9]+$",
    253,
    "a ConfigMap/Secret key: letters, digits, '-', '_' and '.', at most 253 characters",
)
VARIABLE_NAME = Format(
    r"^[A-Za-z_][A-Za-z0-9_]*$",
    253,
    "a variable name: letters, digits and '_', not starting with a digit",
)
# At most five digits before each unit: with the 64-character cap no duration the pattern
# accepts overflows Go's int64 nanoseconds, so the CRD's CEL `duration()` never fails on
# one (a runtime error there would replace the rule's message with an evaluation error).
DURATION = Format(
    r"^(0|([0-9]{1,5}(\.[0-9]{1,9})?(ms|s|m|h))+)$",
    64,
    "a duration such as 90s, 30m, 1h or 1h30m (at most 5 digits before each unit), or 0",
)
# Kubernetes label keys and values, as the API server checks them (labels appinfra puts
# on the objects it writes: a monitor's `labels`, a PrometheusRule's `ruleLabels`).
KUBE_LABEL_KEY = Format(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
    317,
    "a label key: an optional DNS subdomain prefix and '/', then at most 63 letters, digits, "
    "'-', '_' or '.', starting and ending with a letter or digit",
)
KUBE_LABEL_VALUE = Format(
    r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$",
    63,
    "a label value: empty or at most 63 letters, digits, '-', '_' or '.', starting and "
    "ending with a letter or digit",
)
PROM_LABEL_NAME = Format(
    r"^[a-zA-Z_][a-zA-Z0-9_]*$",
    128,
    "a Prometheus label name: letters, digits and '_', not starting with a digit, "
    "at most 128 characters",
)
ABSOLUTE_PATH = Format(r"^/[^:]*$", 1024, "an absolute path starting with '/' and without ':'")
URL_PATH_PREFIX = Format(r"^/.*$", 1024, "a URL path starting with '/'")
HEADER_NAME = Format(r"^[A-Za-z0-9-]+$", 256, "an HTTP header name: letters, digits and '-'")
IP_OR_CIDR = Format(
    r"^[0-9a-fA-F:.]+(/[0-9]{1,3})?$",
    64,
    "an IP address or CIDR range such as 10.0.0.0/8",
    extra_check=_is_ip_or_cidr,
)

DNSLabel = Annotated[str, DNS_LABEL]
KubeLabelKey = Annotated[str, KUBE_LABEL_KEY]
KubeLabelValue = Annotated[str, KUBE_LABEL_VALUE]
PromLabelName = Annotated[str, PROM_LABEL_NAME]
DNSSubdomain = Annotated[str, DNS_SUBDOMAIN]
OptionalDNSSubdomain = Annotated[str, OPTIONAL_DNS_SUBDOMAIN]
DataKey = Annotated[str, DATA_KEY]
VariableName = Annotated[str, VARIABLE_NAME]
Duration = Annotated[str, DURATION]
AbsolutePath = Annotated[str, ABSOLUTE_PATH]
UrlPathPrefix = Annotated[str, URL_PATH_PREFIX]
HeaderName = Annotated[str, HEADER_NAME]
IPOrCIDR = Annotated[str, IP_OR_CIDR]

_DURATION_UNITS = {
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
}


def exact_duration(text: str) -> Fraction:
    """Seconds in a duration string such as "1h30m" or "0", exactly (no float rounding, so
    a bound check agrees with Go's integer nanoseconds); raises ValueError if malformed."""
    if not DURATION.accepts(text):
        raise ValueError(f"{text!r} is not {DURATION.explain}")
    return sum(
        (
            Fraction(number) * _DURATION_UNITS[unit]
            for number, unit in re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", text)
        ),
        Fraction(0),
    )


def duration_seconds(text: str) -> float:
    """Seconds in a duration string such as "1h30m" or "0"; raises ValueError if malformed."""
    return float(exact_duration(text))


_PERCENT = r"^[0-9]+%$"


def _int_or_percent(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and re.fullmatch(_PERCENT, value):
        return value
    raise PydanticCustomError(
        FORMAT_ERROR,
        "must be a whole number such as 1 or a percentage such as '25%' (got {got})",
        {"got": repr(value)},
    )


IntOrPercent = Annotated[
    int | str,
    PlainValidator(_int_or_percent),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "minimum": 0,
            "pattern": _PERCENT,
        }
    ),
]
"""Kubernetes' IntOrString as used for surge and availability: a count or a percentage."""


@dataclass(frozen=True)
class ListSet(_CheckedMetadata):
    """A list of unique scalars (`x-kubernetes-list-type: set`); the API server rejects
    a repeated item, so Python does too."""

    def check(self, value: list[Any]) -> None:
        _reject_repeats(value, "item")

    def schema_keywords(self) -> dict[str, Any]:
        return {"x-kubernetes-list-type": "set"}


@dataclass(frozen=True)
class ListMap(_CheckedMetadata):
    """A list of objects keyed by one field (`x-kubernetes-list-type: map`); the API
    server rejects two items with the same key and merges such lists by key under
    server-side apply, so Python rejects repeats too."""

    key: str  # the wire (camelCase) name of the key field

    def check(self, value: list[Any]) -> None:
        _reject_repeats([item.model_dump(by_alias=True)[self.key] for item in value], self.key)

    def schema_keywords(self) -> dict[str, Any]:
        return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [self.key]}


def _reject_repeats(keys: list[Any], what: str) -> None:
    seen = set()
    for key in keys:
        if key in seen:
            raise PydanticCustomError(
                DUPLICATE_ERROR,
                "{what} {key} appears more than once",
                {"what": what, "key": repr(key)},
            )
        seen.add(key)


FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A native Kubernetes shape passed through as is; the API server validates it where it lands."""
