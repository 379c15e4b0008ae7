"""HealthPolicy `alerts`: a small SLO spec the operator turns into a PrometheusRule.

Nothing here is PromQL. Every part that ends up in an expression is a validated piece
(a metric name, a label name, a matcher value of a restricted alphabet, a decimal,
a duration) and render/alerts.py assembles the expressions from them, quoting values
itself; raw user PromQL is never accepted. Values that end up in alert labels or
annotations exclude `{` and `}`, because Prometheus expands Go templates there.
"""

from __future__ import annotations

import re
import warnings
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import Field

from appinfra.api.base import ApiModel, Rule
from appinfra.api.formats import Format, KubeLabelKey, KubeLabelValue, ListSet, PromLabelName
from appinfra.api.names import GROUP, MANAGED_BY

# --- formats (Prometheus' own rules, bounded) ----------------------------------------

METRIC_NAME = Format(
    r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
    200,
    "a Prometheus metric name: letters, digits, '_' and ':', not starting with a digit, "
    "at most 200 characters",
)


def _compiles(value: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Python's "possible nested set": RE2 differs
            re.compile(value)
    except (re.error, FutureWarning):
        return False
    # No "(?" (flags, lookarounds, named groups) and no repetition of a repetition:
    # Python reads a*+ as possessive, RE2 refuses it ("invalid nested repetition").
    return "(?" not in value and re.search(r"[*+?][*+]", value) is None


# One alphabet for every matcher value, regular expression or not: enough for label
# values and simple alternations (5.., GET|POST, api-.*), and nothing that needs quoting
# beyond what render/alerts.py does, nor any backslash escape RE2 and Python read apart.
MATCHER_VALUE = Format(
    r"^[-A-Za-z0-9_.:/|*+?()\[\]^$, ]*$",
    256,
    "a label value or regular expression of letters, digits, spaces and - _ . : / | * + ? "
    "( ) [ ] ^ $ , (no backslash, no quote, no '(?'), at most 256 characters",
    extra_check=_compiles,
)
LABEL_VALUE = Format(
    r"^[^{}\r\n]*$",
    256,
    "a label value without '{', '}' or line breaks (Prometheus expands templates in "
    "alert labels), at most 256 characters",
)
RUNBOOK_URL = Format(
    r"^https?://[^\s{}<>\"'#]+$",
    512,
    "an http(s) URL without '#', spaces, quotes, '<', '>', '{' or '}', at most 512 "
    "characters (each alert appends #<alert name in lowercase>)",
)
FOR_DURATION = Format(
    r"^[1-9][0-9]{0,3}(s|m|h)$",
    8,
    "a Prometheus duration of one unit: 1 to 9999 followed by s, m or h, e.g. 90s, 10m, 1h",
)
SLO_WINDOW = Format(
    r"^[1-9][0-9]?(d|w)$",
    3,
    "a Prometheus duration in days or weeks: 1 to 99 followed by d or w, e.g. 30d or 4w",
)


def _percent_in_range(value: str) -> bool:
    try:
        number = Decimal(value)
    except InvalidOperation:
        return False
    return Decimal(0) < number < Decimal(100)


def _positive_latency(value: str) -> bool:
    return Decimal(value.removesuffix("s").removesuffix("m")) > 0


OBJECTIVE = Format(
    r"^[0-9]{1,2}(\.[0-9]{1,6})?$",
    9,
    "a percentage above 0 and below 100 as a string, with at most 6 decimals, e.g. '99.9'",
    extra_check=_percent_in_range,
)
LATENCY_THRESHOLD = Format(
    r"^([1-9][0-9]{0,5}ms|[0-9]{1,4}(\.[0-9]{1,3})?s)$",
    10,
    "a duration in ms or s that is one of the histogram's `le` buckets, e.g. 300ms, 0.3s or 1s",
    extra_check=lambda v: _positive_latency(v),
)


MetricName = Annotated[str, METRIC_NAME]
MatcherValue = Annotated[str, MATCHER_VALUE]
LabelValue = Annotated[str, LABEL_VALUE]
RunbookURL = Annotated[str, RUNBOOK_URL]
ForDuration = Annotated[str, FOR_DURATION]
SloWindow = Annotated[str, SLO_WINDOW]
Objective = Annotated[str, OBJECTIVE]
LatencyThreshold = Annotated[str, LATENCY_THRESHOLD]

# Labels the operator sets on every rule: a user label may not replace them.
RESERVED_LABELS = ("namespace", "healthpolicy", "severity", "slo")
_OBJECTIVE_CEL = "double(self.objective) > 0.0 && double(self.objective) < 100.0"


def _objective_rule() -> Rule:
    return Rule(
        cel=_OBJECTIVE_CEL,
        message="objective must be above 0 and below 100 (a percentage such as '99.9')",
        holds=lambda m: _percent_in_range(m.objective),
        field="objective",
    )


def _ours(label_key: str) -> bool:
    return label_key == MANAGED_BY or label_key.startswith(f"{GROUP}/")


class Matcher(ApiModel):
    """One Prometheus label matcher, built into the expression by the operator
    (label, operator, quoted value): never PromQL text."""

    label: PromLabelName = Field(description="The label to match.")
    op: Literal["=", "!=", "=~", "!~"] = Field(
        default="=", description="Match operator: =, !=, =~ (regular expression) or !~."
    )
    value: MatcherValue = Field(description="The value, or a regular expression for =~ and !~.")

    rules = (
        Rule(
            cel="!self.value.contains('(?') && !self.value.matches('[*+?][*+]')",
            message="value may not contain '(?' or a repeated repetition such as '*+' "
            "(Prometheus' regular expressions have neither)",
            holds=lambda m: "(?" not in m.value and re.search(r"[*+?][*+]", m.value) is None,
            field="value",
        ),
        Rule(
            cel="self.label != 'namespace'",
            message="namespace is always the HealthPolicy's own namespace and cannot be matched on",
            holds=lambda m: m.label != "namespace",
            field="label",
        ),
    )


Matchers = Annotated[list[Matcher], Field(max_length=8)]


class CounterSelector(ApiModel):
    """A counter and the matchers that pick the requests it counts (added to
    alerts.selector)."""

    metric: MetricName = Field(description="The counter's metric name.")
    matchers: Matchers = Field(
        default_factory=list, description="Matchers for this counter only (at most 8)."
    )


HTTP_REQUESTS = "http_requests_total"
HTTP_DURATION = "http_request_duration_seconds"


class AvailabilitySLO(ApiModel):
    """Availability: the share of requests that succeed, from a pair of counters."""

    objective: Objective = Field(
        description="Percentage of requests that must succeed over alerts.window, e.g. '99.9'."
    )
    total: CounterSelector = Field(
        default_factory=lambda: CounterSelector(metric=HTTP_REQUESTS),
        description="Every request: default http_requests_total.",
    )
    errors: CounterSelector | None = Field(
        default=None,
        description='Failed requests. Default (with no success): http_requests_total{code=~"5.."}.',
    )
    success: CounterSelector | None = Field(
        default=None,
        description="Succeeded requests, instead of errors: the error ratio is then "
        "1 - success/total.",
    )

    rules = (
        _objective_rule(),
        Rule(
            cel="!(has(self.errors) && has(self.success))",
            message="set errors or success, not both",
            holds=lambda a: a.errors is None or a.success is None,
            field="success",
            reason="FieldValueForbidden",
        ),
    )

    def error_counter(self) -> CounterSelector | None:
        """The errors counter (the default when neither errors nor success is set)."""
        if self.success is not None:
            return None
        return self.errors or CounterSelector(
            metric=HTTP_REQUESTS, matchers=[Matcher(label="code", op="=~", value="5..")]
        )


class LatencySLO(ApiModel):
    """Latency: the share of requests faster than a threshold, from a histogram."""

    objective: Objective = Field(
        description="Percentage of requests that must be faster than threshold, e.g. '99'."
    )
    threshold: LatencyThreshold = Field(
        description="The latency, one of the histogram's `le` buckets, e.g. 300ms "
        '(the bucket le="0.3").'
    )
    metric: MetricName = Field(
        default=HTTP_DURATION,
        description="The histogram's base name (its series are <metric>_bucket and "
        "<metric>_count); default http_request_duration_seconds.",
    )
    matchers: Matchers = Field(
        default_factory=list, description="Matchers for this histogram only (at most 8)."
    )

    rules = (
        _objective_rule(),
        Rule(
            cel="!self.threshold.matches('^0+(\\\\.0+)?m?s$')",
            message="threshold must be above 0, e.g. 300ms",
            holds=lambda m: _positive_latency(m.threshold),
            field="threshold",
        ),
    )


class WorkloadAlerts(ApiModel):
    """How long each kube-state-metrics condition must last before its alert fires."""

    rollout_stuck_for: ForDuration = Field(
        default="5m",
        description="DeploymentRolloutStuck: Progressing=False (ProgressDeadlineExceeded) "
        "for this long.",
    )
    replicas_unavailable_for: ForDuration = Field(
        default="10m",
        description="DeploymentReplicasUnavailable: some replicas unavailable for this long.",
    )
    crash_looping_for: ForDuration = Field(
        default="15m",
        description="PodCrashLooping: a container of the target's pods in CrashLoopBackOff "
        "for this long.",
    )


AlertName = Literal[
    "SLOAvailabilityBurn1h",
    "SLOAvailabilityBurn6h",
    "SLOAvailabilityBurn1d",
    "SLOAvailabilityBurn3d",
    "SLOLatencyBurn1h",
    "SLOLatencyBurn6h",
    "SLOLatencyBurn1d",
    "SLOLatencyBurn3d",
    "DeploymentRolloutStuck",
    "DeploymentReplicasUnavailable",
    "PodCrashLooping",
]


class AlertsSpec(ApiModel):
    """A PrometheusRule named after the HealthPolicy: multi-window multi-burn-rate SLO
    alerts and recording rules, and alerts on the target's rollout and pods."""

    window: SloWindow = Field(
        default="30d", description="The SLO period the objectives are measured over."
    )
    selector: Matchers = Field(
        default_factory=list,
        description="Matchers that pick the target's series of the SLO metrics; empty means job=\""
        '<targetRef.name>". namespace="<namespace>" is always added (at most 8).',
    )
    availability: AvailabilitySLO | None = Field(
        default=None, description="Availability objective (error ratio of requests)."
    )
    latency: LatencySLO | None = Field(
        default=None, description="Latency objective (share of requests slower than threshold)."
    )
    workload: WorkloadAlerts = Field(
        default_factory=WorkloadAlerts,
        description="Always-on alerts from kube-state-metrics: rollout stuck, replicas "
        "unavailable, crash looping.",
    )
    labels: dict[PromLabelName, LabelValue] = Field(
        default_factory=dict,
        max_length=16,
        description="Extra labels on every alert, for Alertmanager routing (at most 16; not "
        "namespace, healthpolicy, severity or slo).",
    )
    rule_labels: dict[KubeLabelKey, KubeLabelValue] = Field(
        default_factory=dict,
        max_length=16,
        description="Extra labels on the PrometheusRule object, so the platform's Prometheus "
        "selects it (its ruleSelector), e.g. release: prometheus (at most 16; not the "
        "app.kubernetes.io/managed-by or appinfra.dev/ labels).",
    )
    runbook_url: RunbookURL | None = Field(
        default=None,
        alias="runbookURL",
        description="Runbook page; each alert's runbook_url annotation is this URL with "
        "#<alert name in lowercase>.",
    )
    disabled: Annotated[list[AlertName], ListSet()] = Field(
        default_factory=list,
        max_length=11,
        description="Alerts to leave out, by name.",
    )

    rules = (
        Rule(
            cel="!has(self.labels) || !self.labels.exists(k, k in "
            + str(list(RESERVED_LABELS))
            + ")",
            message="labels may not set namespace, healthpolicy, severity or slo: the "
            "operator sets them",
            holds=lambda a: not set(a.labels) & set(RESERVED_LABELS),
            field="labels",
        ),
        Rule(
            cel="!has(self.ruleLabels) || !self.ruleLabels.exists(k, "
            f"k == '{MANAGED_BY}' || k.startsWith('{GROUP}/'))",
            message=f"ruleLabels may not set {MANAGED_BY} or {GROUP}/ labels: the operator "
            "sets them",
            holds=lambda a: not any(_ours(key) for key in a.rule_labels),
            field="ruleLabels",
        ),
    )
