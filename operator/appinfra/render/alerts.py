"""HealthPolicy `alerts` -> one PrometheusRule (monitoring.coreos.com/v1) for the target.

Pure: the spec, the owner and the target's name in, the object out.

Multi-window, multi-burn-rate alerts (Google SRE workbook, "Alerting on SLOs"). The
error budget of an objective of 99.9% is 0.1% of requests over the SLO window; the burn
rate is how many times faster than "exactly the budget over the window" errors come in.
Each alert fires when a share of the whole window's budget would be spent within its
long window, confirmed by a short window (1/12 of the long one) so that it also stops
soon after the errors stop:

| alert | long | short | budget spent | burn rate (30d) | severity |
|---|---|---|---|---|---|
| ...Burn1h | 1h | 5m | 2% | 14.4 | critical (page) |
| ...Burn6h | 6h | 30m | 5% | 6 | critical (page) |
| ...Burn1d | 1d | 2h | 10% | 3 | warning (ticket) |
| ...Burn3d | 3d | 6h | 10% | 1 | warning (ticket) |

The burn rate is `budget spent * window / long window`, so the table's factors hold for
a 30d window and other windows keep the same budget shares. The error ratio of each
window is a recording rule carrying `namespace` and `healthpolicy` labels (so the
recorded series of two HealthPolicies never collide); the alerts compare those.

Safety of the expressions: every piece comes from a validated field (api/alerts.py)
and every label value is quoted here; no user text is PromQL. Label values and
annotations contain no `{`/`}`, which Prometheus would expand as templates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from appinfra.api.alerts import AlertsSpec, AvailabilitySLO, CounterSelector, LatencySLO, Matcher
from appinfra.api.names import Obj
from appinfra.render.common import Owner, child

PROMETHEUS_RULE_API = "monitoring.coreos.com/v1"
RECORD_PREFIX = "appinfra_slo"


@dataclass(frozen=True)
class BurnAlert:
    name: str  # the alert's suffix and long window, e.g. "1h"
    long: str
    short: str
    long_hours: int
    budget_share: Fraction  # of the whole window's error budget, spent within `long`
    severity: str


BURN_ALERTS = (
    BurnAlert("1h", "1h", "5m", 1, Fraction(2, 100), "critical"),
    BurnAlert("6h", "6h", "30m", 6, Fraction(5, 100), "critical"),
    BurnAlert("1d", "1d", "2h", 24, Fraction(10, 100), "warning"),
    BurnAlert("3d", "3d", "6h", 72, Fraction(10, 100), "warning"),
)
_WINDOW_HOURS = {"d": 24, "w": 24 * 7}


def window_hours(window: str) -> int:
    return int(window[:-1]) * _WINDOW_HOURS[window[-1]]


def burn_rate(alert: BurnAlert, window: str) -> Fraction:
    """How many times the budget's even pace the alert fires at (14.4 for 1h in 30d)."""
    return alert.budget_share * window_hours(window) / alert.long_hours


def _number(value: Fraction) -> str:
    """A PromQL number literal (and a number for people): the shortest decimal that reads
    back as the same float, without a trailing ".0"."""
    text = repr(float(value))
    return text.removesuffix(".0")


def _quote(value: str) -> str:
    """A PromQL string literal (double-quoted, Go escapes). The formats already exclude
    backslashes and quotes; escaping anyway keeps this safe on its own."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _selector(metric: str, matchers: Iterable[tuple[str, str, str]]) -> str:
    return metric + "{" + ", ".join(f"{label}{op}{_quote(v)}" for label, op, v in matchers) + "}"


def _pairs(matchers: Sequence[Matcher]) -> list[tuple[str, str, str]]:
    return [(m.label, m.op, m.value) for m in matchers]


def _threshold_le(threshold: str) -> str:
    """The `le` values a bucket of `threshold` is exported with, as one regular expression:
    clients write 0.3 and 1 (or 1.0: Prometheus 3 normalizes integers so), always seconds."""
    seconds = (
        Decimal(threshold[:-2]) / 1000 if threshold.endswith("ms") else Decimal(threshold[:-1])
    )
    text = format(seconds.normalize(), "f")
    forms = [text, text + ".0"] if "." not in text else [text]
    return "|".join(form.replace(".", "\\.") for form in forms)


@dataclass(frozen=True)
class _Sli:
    """One objective as the rules need it: its name, error ratio over a window, wording."""

    key: str  # availability | latency
    title: str  # Availability | Latency
    objective: str
    bad: str  # what an error is, for descriptions

    def record(self, window: str) -> str:
        return f"{RECORD_PREFIX}:{self.key}_errors:ratio_rate{window}"


class _Builder:
    def __init__(self, owner: Owner, spec: AlertsSpec, target: str) -> None:
        self.owner, self.spec, self.target = owner, spec, target
        self.scope = [("namespace", "=", owner.namespace)] + (
            _pairs(spec.selector) if spec.selector else [("job", "=", target)]
        )
        self.record_labels = {"namespace": owner.namespace, "healthpolicy": owner.name}

    def enabled(self, alert: str) -> bool:
        return alert not in self.spec.disabled

    def annotations(self, alert: str, summary: str, description: str) -> dict[str, str]:
        out = {"summary": summary, "description": description}
        if self.spec.runbook_url:
            out["runbook_url"] = f"{self.spec.runbook_url}#{alert.lower()}"
        return out

    def labels(self, severity: str, **extra: str) -> dict[str, str]:
        return {**self.spec.labels, "severity": severity, **extra}

    def rate(self, counter: CounterSelector, window: str) -> str:
        matchers = self.scope + _pairs(counter.matchers)
        return f"sum(rate({_selector(counter.metric, matchers)}[{window}]))"

    def availability_ratio(self, slo: AvailabilitySLO, window: str) -> str:
        total = self.rate(slo.total, window)
        errors = slo.error_counter()
        if errors is not None:
            return f"{self.rate(errors, window)}\n/\n{total}"
        assert slo.success is not None
        return f"1 - (\n{self.rate(slo.success, window)}\n/\n{total}\n)"

    def latency_ratio(self, slo: LatencySLO, window: str) -> str:
        scope = self.scope + _pairs(slo.matchers)
        le = ("le", "=~", _threshold_le(slo.threshold))
        fast = _selector(f"{slo.metric}_bucket", [*scope, le])
        total = _selector(f"{slo.metric}_count", scope)
        return f"1 - (\nsum(rate({fast}[{window}]))\n/\nsum(rate({total}[{window}]))\n)"

    def slo_rules(self, sli: _Sli, ratio: dict[str, str]) -> list[Obj]:
        """Recording rules for the windows the enabled alerts read, then the alerts."""
        alerts = [a for a in BURN_ALERTS if self.enabled(f"SLO{sli.title}Burn{a.name}")]
        windows = sorted({w for a in alerts for w in (a.short, a.long)}, key=_window_seconds)
        rules: list[Obj] = [
            {"record": sli.record(w), "expr": ratio[w], "labels": dict(self.record_labels)}
            for w in windows
        ]
        budget = (100 - Fraction(sli.objective)) / 100
        scope = [(k, "=", v) for k, v in self.record_labels.items()]
        window = self.spec.window
        for a in alerts:
            rate = burn_rate(a, window)
            limit = _number(rate * budget)
            name = f"SLO{sli.title}Burn{a.name}"
            exhausted = _hours(window_hours(window) / rate)
            rules.append(
                {
                    "alert": name,
                    "expr": f"{_selector(sli.record(a.long), scope)} > {limit}\nand\n"
                    f"{_selector(sli.record(a.short), scope)} > {limit}",
                    "labels": self.labels(a.severity, slo=sli.key),
                    "annotations": self.annotations(
                        name,
                        f"{sli.title} SLO of Deployment {self.target} is burning its error "
                        f"budget {_number(rate)}x too fast",
                        f"{{{{ $value | humanizePercentage }}}} of requests to Deployment "
                        f"{self.target} in namespace {self.owner.namespace} {sli.bad} over "
                        f"the last {a.long} (and over the last {a.short}): {_number(rate)} "
                        f"times the rate the {sli.objective}% objective over {window} "
                        f"allows. At this rate the whole {window} error budget is spent in "
                        f"{exhausted}.",
                    ),
                }
            )
        return rules

    def workload_rules(self) -> list[Obj]:
        ns, name = self.owner.namespace, self.target
        deployment = [("namespace", "=", ns), ("deployment", "=", name)]
        # Pods of a Deployment are named <deployment>-<pod-template-hash>-<suffix>.
        pod = name.replace(".", "\\.") + "-[a-z0-9]+-[a-z0-9]+"
        pods = [("namespace", "=", ns), ("pod", "=~", pod)]
        work = self.spec.workload
        where = f"Deployment {name} in namespace {ns}"
        candidates = [
            (
                "DeploymentRolloutStuck",
                _selector(
                    "kube_deployment_status_condition",
                    [*deployment, ("condition", "=", "Progressing"), ("status", "=", "false")],
                )
                + " == 1",
                work.rollout_stuck_for,
                f"Rollout of Deployment {name} is stuck",
                f"The rollout of {where} has not progressed within its "
                "progressDeadlineSeconds (Progressing=False, ProgressDeadlineExceeded) for "
                f"{work.rollout_stuck_for}: check the new pods' events and logs, fix the "
                "template or roll back.",
            ),
            (
                "DeploymentReplicasUnavailable",
                _selector("kube_deployment_status_replicas_unavailable", deployment) + " > 0",
                work.replicas_unavailable_for,
                f"Deployment {name} has unavailable replicas",
                f"{{{{ $value }}}} replicas of {where} have been unavailable for "
                f"{work.replicas_unavailable_for}: check the pods' events, restarts and "
                "readiness probe failures.",
            ),
            (
                "PodCrashLooping",
                "max_over_time("
                + _selector(
                    "kube_pod_container_status_waiting_reason",
                    [*pods, ("reason", "=", "CrashLoopBackOff")],
                )
                + "[5m]) >= 1",
                work.crash_looping_for,
                f"A pod of Deployment {name} is crash looping",
                f"Container {{{{ $labels.container }}}} of pod {{{{ $labels.pod }}}} of {where} "
                f"has been in CrashLoopBackOff for {work.crash_looping_for}: check its logs "
                "(kubectl logs --previous).",
            ),
        ]
        return [
            {
                "alert": alert,
                "expr": expr,
                "for": duration,
                "labels": self.labels("warning", healthpolicy=self.owner.name),
                "annotations": self.annotations(alert, summary, description),
            }
            for alert, expr, duration, summary, description in candidates
            if self.enabled(alert)
        ]

    def groups(self) -> list[Obj]:
        spec = self.spec
        slo: list[Obj] = []
        if spec.availability is not None:
            sli = _Sli("availability", "Availability", spec.availability.objective, "failed")
            ratio = {w: self.availability_ratio(spec.availability, w) for w in _ALL_WINDOWS}
            slo += self.slo_rules(sli, ratio)
        if spec.latency is not None:
            bad = f"were slower than {spec.latency.threshold}"
            sli = _Sli("latency", "Latency", spec.latency.objective, bad)
            ratio = {w: self.latency_ratio(spec.latency, w) for w in _ALL_WINDOWS}
            slo += self.slo_rules(sli, ratio)
        prefix = f"healthpolicy.{self.owner.namespace}.{self.owner.name}"
        groups = [
            {"name": f"{prefix}.slo", "rules": slo},
            {"name": f"{prefix}.workload", "rules": self.workload_rules()},
        ]
        return [g for g in groups if g["rules"]]


_ALL_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def _window_seconds(window: str) -> int:
    return int(window[:-1]) * _UNIT_SECONDS[window[-1]]


def _hours(hours: Fraction) -> str:
    """A rough duration for people: 50h -> "about 2d 2h"."""
    whole = round(hours)
    days, rest = divmod(whole, 24)
    if days == 0:
        return f"about {max(whole, 1)}h"
    return f"about {days}d" + (f" {rest}h" if rest else "")


def render_alerts(owner: Owner, spec: AlertsSpec, target: str) -> Obj:
    """The PrometheusRule `<owner name>` with the SLO and workload rule groups."""
    labels = {**spec.rule_labels, **owner.labels}
    rule = child(owner, PROMETHEUS_RULE_API, "PrometheusRule", owner.name,
                 spec={"groups": _Builder(owner, spec, target).groups()})  # fmt: skip
    rule["metadata"]["labels"] = labels
    return rule
