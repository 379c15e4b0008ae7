"""ServiceProfile `monitoring`: a Prometheus Operator ServiceMonitor or PodMonitor for the
target's pods.

Field names follow the Prometheus Operator's (monitoring.coreos.com/v1, v0.85) so a
platform team reads them as they know them; the values are bounded here, more tightly
than the Prometheus Operator's own CRDs, which bound nothing.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from appinfra.api.base import ApiModel, Rule
from appinfra.api.formats import (
    FORMAT_ERROR,
    AbsolutePath,
    DNSLabel,
    Format,
    KubeLabelKey,
    KubeLabelValue,
    PromLabelName,
)
from appinfra.api.names import MANAGED_BY, OWNER_KIND, OWNER_NAME

# A Prometheus duration restricted to what both Prometheus and CEL's duration() parse
# (h, m, s, ms, in that order, at least one, whole numbers, at most 5 digits each: no
# overflow of Go's int64 nanoseconds, so the CEL rule below never errors on a value the
# pattern accepts).
_D = "[0-9]{1,5}"
SCRAPE_DURATION = Format(
    rf"^({_D}h({_D}m)?({_D}s)?({_D}ms)?|{_D}m({_D}s)?({_D}ms)?|{_D}s({_D}ms)?|{_D}ms)$",
    32,
    "a duration such as 30s, 1m, 1m30s or 500ms (units h, m, s, ms in that order, whole numbers)",
)
ScrapeDuration = Annotated[str, SCRAPE_DURATION]
_UNITS_MS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}


def scrape_duration_ms(text: str) -> int:
    """Milliseconds in a SCRAPE_DURATION string (exact, as Go's duration compares)."""
    return sum(int(n) * _UNITS_MS[u] for n, u in re.findall(r"([0-9]+)(ms|h|m|s)", text))


RESERVED_LABELS = (MANAGED_BY, OWNER_KIND, OWNER_NAME)
"""appinfra's own labels on the monitor: they find and own it, so a user may not set them."""

# A container port name (IANA_SVC_NAME, as Kubernetes checks `containerPort.name`).
_PORT_NAME = r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$"
_PORT_EXPLAIN = (
    "a port number 1-65535 such as 8080 or a container port name such as metrics "
    "(at most 15 lowercase letters, digits and '-', with at least one letter)"
)


def _port(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value
    if (
        isinstance(value, str)
        and re.fullmatch(_PORT_NAME, value)
        and re.search("[a-z]", value)
        and "--" not in value
    ):
        return value
    raise PydanticCustomError(FORMAT_ERROR, "must be {explain}", {"explain": _PORT_EXPLAIN})


Port = Annotated[
    int | str,
    PlainValidator(_port),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "minimum": 1,
            "maximum": 65535,
            "pattern": _PORT_NAME,
            "maxLength": 15,
            "description": _PORT_EXPLAIN,
        }
    ),
]

RelabelAction = Literal[
    "replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod",
    "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep",
    "lowercase", "Lowercase", "uppercase", "Uppercase", "keepequal", "KeepEqual",
    "dropequal", "DropEqual",
]  # fmt: skip
"""The Prometheus Operator's RelabelConfig.action enum, both spellings."""
_NEEDS_TARGET = ("replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal")
_NEEDS_TARGET_CEL = "[" + ", ".join(f"'{a}'" for a in _NEEDS_TARGET) + "]"


class RelabelConfig(ApiModel):
    """One Prometheus relabeling rule, passed through to the monitor as the Prometheus
    Operator's RelabelConfig (see Prometheus' relabel_config)."""

    source_labels: list[PromLabelName] | None = Field(
        default=None, max_length=32, description="Labels whose values are joined."
    )
    separator: str | None = Field(
        default=None, max_length=16, description="Joins sourceLabels' values (default ';')."
    )
    target_label: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Label written by replace, hashmod, lowercase, uppercase, keepequal and "
        "dropequal (required for them); regex capture groups are available.",
    )
    regex: str | None = Field(
        default=None, max_length=1024, description="RE2 regular expression (default '(.*)')."
    )
    modulus: int | None = Field(
        default=None, ge=1, le=2**32, description="Modulus of the hash; required for hashmod."
    )
    replacement: str | None = Field(
        default=None,
        max_length=1024,
        description="Value written on a match (default '$1'); capture groups are available.",
    )
    action: RelabelAction | None = Field(
        default=None, description="What to do on a match (default replace)."
    )

    rules = (
        Rule(
            cel=f"has(self.targetLabel) || (has(self.action)"
            f" && !(self.action.lowerAscii() in {_NEEDS_TARGET_CEL}))",
            message="targetLabel is required for the replace (default), hashmod, lowercase, "
            "uppercase, keepequal and dropequal actions",
            holds=lambda r: (
                r.target_label is not None
                or (r.action is not None and r.action.lower() not in _NEEDS_TARGET)
            ),
            field="targetLabel",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="has(self.modulus) || !has(self.action) || self.action.lowerAscii() != 'hashmod'",
            message="modulus is required for the hashmod action",
            holds=lambda r: r.modulus is not None or (r.action or "").lower() != "hashmod",
            field="modulus",
            reason="FieldValueRequired",
        ),
    )


MAX_RELABELINGS = 32
MAX_LABELS = 32


def _reserved_cel() -> str:
    return " && ".join(f"!('{key}' in self.labels)" for key in RESERVED_LABELS)


class MonitoringSpec(ApiModel):
    """How Prometheus scrapes the target's pods: through a ServiceMonitor (when a Service
    selects them) or a PodMonitor, named after the ServiceProfile."""

    kind: Literal["Auto", "ServiceMonitor", "PodMonitor"] = Field(
        default="Auto",
        description="Auto: a ServiceMonitor when a Service in the namespace selects the "
        "target's pods (or `service` names one), else a PodMonitor. ServiceMonitor: "
        "always (a Service must select the pods); PodMonitor: never through a Service.",
    )
    service: DNSLabel | None = Field(
        default=None,
        description="The Service the ServiceMonitor scrapes through; unset means the first "
        "Service (by name) whose selector matches the target's pod template labels.",
    )
    port: Port = Field(
        description="The pods' port to scrape: a container port name (such as metrics) or "
        "number. With a ServiceMonitor, the Service must expose it."
    )
    path: AbsolutePath = Field(default="/metrics", description="HTTP path of the metrics.")
    scheme: Literal["http", "https"] | None = Field(
        default=None, description="http or https; unset means Prometheus' default, http."
    )
    interval: ScrapeDuration | None = Field(
        default=None, description="Scrape interval; unset means Prometheus' global one."
    )
    scrape_timeout: ScrapeDuration | None = Field(
        default=None,
        description="Scrape timeout, at most `interval`; unset means Prometheus' global one.",
    )
    relabelings: list[RelabelConfig] = Field(
        default_factory=list,
        max_length=MAX_RELABELINGS,
        description="Relabelings applied to the target's labels before the scrape.",
    )
    metric_relabelings: list[RelabelConfig] = Field(
        default_factory=list,
        max_length=MAX_RELABELINGS,
        description="Relabelings applied to the scraped samples before ingestion.",
    )
    labels: dict[KubeLabelKey, KubeLabelValue] = Field(
        default_factory=dict,
        max_length=MAX_LABELS,
        description="Labels added to the ServiceMonitor/PodMonitor, so the platform's "
        "Prometheus (its serviceMonitorSelector/podMonitorSelector) selects it.",
    )

    rules = (
        Rule(
            # The pattern guards keep CEL's duration() away from strings the schema's
            # pattern already refuses (reported on their own).
            cel="!has(self.interval) || !has(self.scrapeTimeout)"
            f" || !self.interval.matches(r'{SCRAPE_DURATION.pattern}')"
            f" || !self.scrapeTimeout.matches(r'{SCRAPE_DURATION.pattern}')"
            " || duration(self.scrapeTimeout) <= duration(self.interval)",
            message="scrapeTimeout must not be longer than interval",
            holds=lambda m: (
                m.interval is None
                or m.scrape_timeout is None
                or scrape_duration_ms(m.scrape_timeout) <= scrape_duration_ms(m.interval)
            ),
            field="scrapeTimeout",
        ),
        Rule(
            cel="!has(self.interval) || !self.interval.matches(r'"
            f"{SCRAPE_DURATION.pattern}') || duration(self.interval) > duration('0s')",
            message="interval must be longer than 0",
            holds=lambda m: m.interval is None or scrape_duration_ms(m.interval) > 0,
            field="interval",
        ),
        Rule(
            cel="!has(self.service) || self.kind != 'PodMonitor'",
            message="service is for a ServiceMonitor: remove it, or set kind to Auto or "
            "ServiceMonitor",
            holds=lambda m: m.service is None or m.kind != "PodMonitor",
            field="service",
            reason="FieldValueForbidden",
        ),
        Rule(
            cel=f"!has(self.labels) || ({_reserved_cel()})",
            message="labels may not set appinfra's own labels "
            f"({', '.join(RESERVED_LABELS)}): they mark the monitor as appinfra's",
            holds=lambda m: not any(key in m.labels for key in RESERVED_LABELS),
            field="labels",
            reason="FieldValueForbidden",
        ),
    )
