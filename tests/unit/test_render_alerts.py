"""HealthPolicy `alerts` -> PrometheusRule: the render is pure, every variant passes the
real `promtool check rules`, and `promtool test rules` feeds series and asserts which
alerts fire (Prometheus' own rule engine, bin/promtool from `make promtool`).

The series are sized to the windows with a 1m evaluation interval: promtool evaluates
every rule at every step, and a 3d range over two hours of samples gives the same ratio
as over three days of them (rate() extrapolates a constant rate), so the long windows
need no days of input.
"""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from appinfra import cli
from appinfra.api.alerts import MATCHER_VALUE, AlertsSpec
from appinfra.render.alerts import BURN_ALERTS, burn_rate, render_alerts
from appinfra.render.common import Owner
from tests.support.prometheus import check_rules, run_rule_tests
from tests.support.servers import REPO

OWNER = Owner("HealthPolicy", "payments", "shop", "uid-1")
SCOPE = 'namespace="shop", job="payments"'
SLO_LABELS = {"namespace": "shop", "healthpolicy": "payments", "team": "payments"}


def rule(owner: Owner = OWNER, target: str = "payments", **alerts: Any) -> dict[str, Any]:
    spec = AlertsSpec.model_validate({"labels": {"team": "payments"}, **alerts}, strict=True)
    return render_alerts(owner, spec, target)


def groups(**alerts: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = rule(**alerts)["spec"]["groups"]
    return out


def names(rendered: dict[str, Any]) -> set[str]:
    return {r["alert"] for g in rendered["spec"]["groups"] for r in g["rules"] if "alert" in r}


AVAILABILITY = {"availability": {"objective": "99.9"}}
LATENCY = {"latency": {"objective": "99", "threshold": "300ms"}}

VARIANTS: dict[str, dict[str, Any]] = {
    "workload only": {},
    "availability (default HTTP counters)": AVAILABILITY,
    "availability from success/total": {
        "availability": {
            "objective": "99.95",
            "total": {"metric": "grpc_server_handled_total"},
            "success": {
                "metric": "grpc_server_handled_total",
                "matchers": [{"label": "grpc_code", "value": "OK"}],
            },
        }
    },
    "availability with errors, regex and negative matchers": {
        "availability": {
            "objective": "99",
            "errors": {
                "metric": "app:requests:total",
                "matchers": [
                    {"label": "status", "op": "=~", "value": "5..|429"},
                    {"label": "path", "op": "!~", "value": "/health.*"},
                ],
            },
        },
        "selector": [
            {"label": "service", "value": "payments-api"},
            {"label": "pod", "op": "!=", "value": "canary"},
        ],
    },
    "latency 300ms": LATENCY,
    "latency 1s on a custom histogram, 4w window": {
        "window": "4w",
        "latency": {
            "objective": "99.5",
            "threshold": "1s",
            "metric": "rpc_latency_seconds",
            "matchers": [{"label": "method", "value": "Pay"}],
        },
    },
    "everything, with runbook and routing": {
        **AVAILABILITY,
        **LATENCY,
        "window": "7d",
        "labels": {"team": "payments", "route": "pager"},
        "runbookURL": "https://runbooks.example.com/payments",
        "workload": {
            "rolloutStuckFor": "90s",
            "replicasUnavailableFor": "1h",
            "crashLoopingFor": "5m",
        },
    },
    "some alerts disabled": {
        **AVAILABILITY,
        **LATENCY,
        "disabled": ["SLOAvailabilityBurn3d", "SLOLatencyBurn1h", "PodCrashLooping"],
    },
}


def test_render_is_pure_and_deterministic() -> None:
    spec = AlertsSpec.model_validate({**AVAILABILITY, **LATENCY})
    before = copy.deepcopy(spec)
    assert render_alerts(OWNER, spec, "payments") == render_alerts(OWNER, spec, "payments")
    assert spec == before


def test_the_rule_is_an_owned_child_with_rule_labels() -> None:
    obj = rule(ruleLabels={"release": "prometheus"}, **AVAILABILITY)
    assert (obj["apiVersion"], obj["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    meta = obj["metadata"]
    assert (meta["name"], meta["namespace"]) == ("payments", "shop")
    assert meta["labels"]["release"] == "prometheus"
    assert meta["labels"]["appinfra.dev/owner-name"] == "payments"
    assert meta["ownerReferences"][0]["uid"] == "uid-1"


def test_every_variant_passes_promtool_check_rules() -> None:
    """One rule file holding every variant (distinct owners give distinct group names)."""
    all_groups = []
    for index, alerts in enumerate(VARIANTS.values()):
        owner = Owner("HealthPolicy", f"hp{index}", "shop", "uid")
        all_groups += rule(owner, **alerts)["spec"]["groups"]
    # A Deployment name with dots: escaped in the pod name pattern, quoted in PromQL.
    dotted = Owner("HealthPolicy", "dotted", "shop", "uid")
    all_groups += rule(dotted, target="pay.ments.v2", **AVAILABILITY)["spec"]["groups"]
    check_rules(all_groups)


def test_the_slo_example_validates_and_renders_a_rule_promtool_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = str(REPO / "examples" / "slo")
    assert cli.main(["validate", "-f", example]) == 0
    assert cli.main(["render", "-f", example]) == 0
    out = capsys.readouterr()
    [rendered] = [d for d in yaml.safe_load_all(out.out) if d and d["kind"] == "PrometheusRule"]
    assert "Prometheus Operator's CRDs" in out.err  # the note on what render cannot know
    assert {"SLOAvailabilityBurn1h", "SLOLatencyBurn1h", "PodCrashLooping"} <= names(rendered)
    check_rules(rendered["spec"]["groups"])


def test_the_sre_workbook_burn_rates_for_30d_scale_with_the_window() -> None:
    assert [burn_rate(a, "30d") for a in BURN_ALERTS] == [Fraction(72, 5), 6, 3, 1]
    assert [a.severity for a in BURN_ALERTS] == ["critical", "critical", "warning", "warning"]
    # The same share of the budget over a 7d window: 2% of 168h in 1h is 3.36x.
    assert burn_rate(BURN_ALERTS[0], "7d") == Fraction(336, 100)
    expr = next(
        r["expr"]
        for r in groups(**AVAILABILITY)[0]["rules"]
        if r.get("alert") == "SLOAvailabilityBurn1h"
    )
    assert "ratio_rate1h" in expr and "ratio_rate5m" in expr and "> 0.0144" in expr


def test_selectors_are_scoped_to_the_namespace_and_the_target() -> None:
    record = groups(**AVAILABILITY)[0]["rules"][0]
    assert record["expr"].startswith(f'sum(rate(http_requests_total{{{SCOPE}, code=~"5.."}}[5m]))')
    assert record["labels"] == {"namespace": "shop", "healthpolicy": "payments"}
    custom = groups(selector=[{"label": "service", "value": "api"}], **AVAILABILITY)
    assert 'namespace="shop", service="api", code=~"5.."' in custom[0]["rules"][0]["expr"]
    workload = {r["alert"]: r["expr"] for r in groups()[0]["rules"]}
    assert 'namespace="shop", pod=~"payments-[a-z0-9]+-[a-z0-9]+"' in workload["PodCrashLooping"]


@pytest.mark.parametrize(
    "value",
    [
        'x"} or vector(1) or {a="',
        "a\\b",
        "{{ $value }}",
        "(?i)admin",
        "(unclosed",
        "a\nb",
        "a*+",
        "5..?+",
        "[[:alpha:]]",
    ],
)
def test_matcher_values_that_could_escape_the_expression_are_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        AlertsSpec.model_validate({"selector": [{"label": "job", "op": "=~", "value": value}]})


_MATCHER_CHARS = "-Az09_.:/|*+?()[]^$, "
# Values the model refuses become "refused" (a filter would discard whole examples).
matcher_values = st.text(alphabet=_MATCHER_CHARS, max_size=24).map(
    lambda v: v if MATCHER_VALUE.accepts(v) else "refused"
)
matchers = st.fixed_dictionaries(
    {"label": st.sampled_from(["job", "service", "code", "le_x", "_a"]),
     "op": st.sampled_from(["=", "!=", "=~", "!~"]), "value": matcher_values}
)  # fmt: skip


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(matchers, max_size=3), min_size=20, max_size=20))
def test_any_matcher_values_the_model_accepts_make_rules_promtool_accepts(
    selectors: list[list[dict[str, str]]],
) -> None:
    """Python's `re` decides what the model accepts, Go's RE2 what Prometheus loads: a
    value one accepts and the other refuses would make a rule file Prometheus rejects.
    Twenty random specs per promtool run."""
    all_groups = []
    for index, selector in enumerate(selectors):
        owner = Owner("HealthPolicy", f"p{index}", "shop", "uid")
        errors = {"metric": "http_requests_total", "matchers": selector}
        availability = {"objective": "99", "errors": errors}
        all_groups += rule(owner, selector=selector, availability=availability)["spec"]["groups"]
    check_rules(all_groups)


def test_disabled_alerts_and_their_unused_recordings_are_left_out() -> None:
    obj = rule(disabled=["SLOAvailabilityBurn1h", "PodCrashLooping"], **AVAILABILITY)
    assert "SLOAvailabilityBurn1h" not in names(obj) and "PodCrashLooping" not in names(obj)
    records = {r["record"] for r in obj["spec"]["groups"][0]["rules"] if "record" in r}
    assert not any(r.endswith(("rate5m", "rate1h")) for r in records)  # only that alert read them


# --- promtool test rules: series in, alerts out ----------------------------------------


def counters(total_per_min: int, errors_per_min: int, minutes: int) -> list[dict[str, str]]:
    """http_requests_total of the target: `total_per_min` requests a minute, of which
    `errors_per_min` answered 500, the rest 200."""
    ok = total_per_min - errors_per_min
    return [
        {"series": f'http_requests_total{{{SCOPE}, code="200"}}', "values": f"0+{ok}x{minutes}"},
        {
            "series": f'http_requests_total{{{SCOPE}, code="500"}}',
            "values": f"0+{errors_per_min}x{minutes}",
        },
        # Another job's errors in the same namespace must not count.
        {
            "series": 'http_requests_total{namespace="shop", job="other", code="500"}',
            "values": f"0+{total_per_min}x{minutes}",
        },
    ]


def firing(alert: str, labels: dict[str, str], eval_time: str) -> dict[str, Any]:
    return {"eval_time": eval_time, "alertname": alert, "exp_alerts": [{"exp_labels": labels}]}


def silent(alert: str, eval_time: str) -> dict[str, Any]:
    return {"eval_time": eval_time, "alertname": alert, "exp_alerts": []}


def burn(sli: str, window: str) -> str:
    return f"SLO{sli}Burn{window}"


def page(sli: str) -> dict[str, str]:
    return {**SLO_LABELS, "severity": "critical", "slo": sli.lower()}


def ticket(sli: str) -> dict[str, str]:
    return {**SLO_LABELS, "severity": "warning", "slo": sli.lower()}


def promtool_test(
    rule_groups: list[dict[str, Any]], series: list[dict[str, str]], alerts: list[dict[str, Any]]
) -> None:
    result = run_rule_tests(
        rule_groups, [{"interval": "1m", "input_series": series, "alert_rule_test": alerts}]
    )
    assert result.returncode == 0, f"promtool test rules:\n{result.stdout}{result.stderr}"


def without_annotations(rule_groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The groups with annotations dropped: promtool compares annotations too, and these
    tests are about which alerts fire (annotations are checked once, below)."""
    out = copy.deepcopy(rule_groups)
    for group in out:
        for r in group["rules"]:
            r.pop("annotations", None)
    return out


def test_a_2_percent_error_rate_pages_fast_for_a_99_9_objective() -> None:
    """2% errors is a 20x burn of a 0.1% budget: above 14.4x, the 1h/5m page fires, two
    minutes after the errors start (the first two samples of the 1m scrapes)."""
    alerts = [firing(burn("Availability", "1h"), page("Availability"), "2m")]
    alerts += [firing(burn("Availability", "1h"), page("Availability"), "10m")]
    alerts += [firing(burn("Availability", "6h"), page("Availability"), "10m")]
    alerts += [firing(burn("Availability", w), ticket("Availability"), "10m") for w in ("1d", "3d")]
    promtool_test(without_annotations(groups(**AVAILABILITY)), counters(1000, 20, 20), alerts)


def test_a_0_05_percent_error_rate_fires_nothing() -> None:
    """Half the budget's pace: no window burns faster than 1x."""
    alerts = [
        silent(burn("Availability", w), t) for w in ("1h", "6h", "1d", "3d") for t in ("10m", "2h")
    ]
    promtool_test(groups(**AVAILABILITY), counters(2000, 1, 130), alerts)


def test_a_slow_burn_of_0_4_percent_fires_only_the_tickets() -> None:
    """4x: above the 3x (1d/2h) and 1x (3d/6h) tickets, below the 6x and 14.4x pages."""
    alerts = [silent(burn("Availability", w), "30m") for w in ("1h", "6h")]
    alerts += [firing(burn("Availability", w), ticket("Availability"), "30m") for w in ("1d", "3d")]
    promtool_test(without_annotations(groups(**AVAILABILITY)), counters(1000, 4, 40), alerts)


def test_the_page_stops_soon_after_the_errors_stop() -> None:
    """The short window: 20 minutes of 5% errors, then none. The 1h ratio stays above
    14.4x for a long while, the 5m one drops within minutes, and with it the page."""
    series = [
        {
            "series": f'http_requests_total{{{SCOPE}, code="200"}}',
            "values": "0+950x20 19000+1000x30",
        },
        {"series": f'http_requests_total{{{SCOPE}, code="500"}}', "values": "0+50x20 1000+0x30"},
    ]
    alerts = [
        firing(burn("Availability", "1h"), page("Availability"), "15m"),
        silent(burn("Availability", "1h"), "35m"),
    ]
    promtool_test(without_annotations(groups(**AVAILABILITY)), series, alerts)


def test_the_success_counter_variant() -> None:
    spec = {
        "availability": {
            "objective": "99.9",
            "success": {
                "metric": "http_requests_total",
                "matchers": [{"label": "code", "op": "=~", "value": "2.."}],
            },
        }
    }
    alerts = [firing(burn("Availability", "1h"), page("Availability"), "10m")]
    promtool_test(without_annotations(groups(**spec)), counters(1000, 20, 20)[:2], alerts)


def histogram(le: str, fast_per_min: int, total_per_min: int, minutes: int) -> list[dict[str, str]]:
    base = "http_request_duration_seconds"
    return [
        {"series": f'{base}_bucket{{{SCOPE}, le="{le}"}}', "values": f"0+{fast_per_min}x{minutes}"},
        {
            "series": f'{base}_bucket{{{SCOPE}, le="+Inf"}}',
            "values": f"0+{total_per_min}x{minutes}",
        },
        {"series": f"{base}_count{{{SCOPE}}}", "values": f"0+{total_per_min}x{minutes}"},
    ]


def test_latency_above_the_threshold_fires_the_latency_alert() -> None:
    """99% must be faster than 300ms; 20% slower is a 20x burn of the 1% budget."""
    alerts = [firing(burn("Latency", "1h"), page("Latency"), "10m")]
    promtool_test(without_annotations(groups(**LATENCY)), histogram("0.3", 80, 100, 20), alerts)
    # 0.5% slower: half the budget's pace, nothing fires.
    quiet = [silent(burn("Latency", w), "30m") for w in ("1h", "6h", "1d", "3d")]
    promtool_test(groups(**LATENCY), histogram("0.3", 995, 1000, 40), quiet)


def test_a_whole_second_threshold_matches_prometheus_3_normalized_le() -> None:
    """Prometheus 3 stores le="1" as le="1.0": both are matched."""
    spec = {"latency": {"objective": "99", "threshold": "1s"}}
    alerts = [firing(burn("Latency", "1h"), page("Latency"), "10m")]
    promtool_test(without_annotations(groups(**spec)), histogram("1.0", 50, 100, 20), alerts)


def ksm(metric: str, values: str, **labels: str) -> dict[str, str]:
    text = ", ".join(f'{k}="{v}"' for k, v in {"namespace": "shop", **labels}.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


WORKLOAD_LABELS = {
    "namespace": "shop",
    "healthpolicy": "payments",
    "team": "payments",
    "severity": "warning",
}


def test_crash_looping_pods_of_the_target_fire_and_others_do_not() -> None:
    waiting = "kube_pod_container_status_waiting_reason"
    ours = {"pod": "payments-7d9f8c6b5-x2x7q", "container": "app", "reason": "CrashLoopBackOff"}
    series = [
        ksm(waiting, "1x30", **ours),
        # A pod of Deployment payments-admin, in the same namespace: not ours.
        ksm(
            waiting,
            "1x30",
            pod="payments-admin-5c4b-abcde",
            container="app",
            reason="CrashLoopBackOff",
        ),
    ]
    alerts = [
        silent("PodCrashLooping", "10m"),  # for: 15m not reached
        firing("PodCrashLooping", {**WORKLOAD_LABELS, **ours}, "20m"),
    ]
    promtool_test(without_annotations(groups()), series, alerts)


def test_unavailable_replicas_fire_after_their_duration() -> None:
    metric = "kube_deployment_status_replicas_unavailable"
    series = [
        ksm(metric, "0x4 2x25", deployment="payments"),
        ksm(metric, "3x30", deployment="other"),
    ]
    labels = {**WORKLOAD_LABELS, "deployment": "payments"}
    alerts = [
        silent("DeploymentReplicasUnavailable", "12m"),
        firing("DeploymentReplicasUnavailable", labels, "20m"),
    ]
    promtool_test(without_annotations(groups()), series, alerts)


def test_a_stuck_rollout_fires() -> None:
    metric = "kube_deployment_status_condition"
    common = {"deployment": "payments", "condition": "Progressing"}
    series = [
        ksm(metric, "1x3 0x20", status="true", **common),
        ksm(metric, "0x3 1x20", status="false", **common),
    ]
    labels = {**WORKLOAD_LABELS, **common, "status": "false"}
    alerts = [
        silent("DeploymentRolloutStuck", "5m"),
        firing("DeploymentRolloutStuck", labels, "15m"),
    ]
    promtool_test(without_annotations(groups()), series, alerts)


def test_annotations_expand_with_the_target_and_runbook() -> None:
    spec = {**AVAILABILITY, "runbookURL": "https://runbooks.example.com/payments"}
    description = (
        "2% of requests to Deployment payments in namespace shop failed over the last 1h "
        "(and over the last 5m): 14.4 times the rate the 99.9% objective over 30d allows. "
        "At this rate the whole 30d error budget is spent in about 2d 2h."
    )
    expected = {
        "exp_labels": page("Availability"),
        "exp_annotations": {
            "summary": "Availability SLO of Deployment payments is burning its error budget "
            "14.4x too fast",
            "description": description,
            "runbook_url": "https://runbooks.example.com/payments#sloavailabilityburn1h",
        },
    }
    alerts = [
        {"eval_time": "10m", "alertname": burn("Availability", "1h"), "exp_alerts": [expected]}
    ]
    promtool_test(groups(**spec), counters(1000, 20, 20), alerts)


def test_a_wrong_expectation_fails() -> None:
    """The harness can fail: asserting the page for 0.05% errors is refused by promtool."""
    alerts = [firing(burn("Availability", "1h"), page("Availability"), "10m")]
    result = run_rule_tests(
        without_annotations(groups(**AVAILABILITY)),
        [{"interval": "1m", "input_series": counters(2000, 1, 20), "alert_rule_test": alerts}],
    )
    assert result.returncode != 0
    assert "SLOAvailabilityBurn1h" in result.stdout + result.stderr
