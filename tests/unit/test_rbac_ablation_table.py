"""The RBAC ablation (`make rbac-ablation`, tests/support/rbac_ablation.py) runs outside
`make test`; this cheap check keeps its table complete: every permission the chart
grants names the scenario that breaks without it, so a new rule cannot be added
without one. Needs bin/helm, like tests/unit/test_chart.py."""

from __future__ import annotations

from tests.support.rbac import chart_rules
from tests.support.rbac_ablation import NOT_PROVEN, SCENARIO_FOR, SCENARIOS, STORES, permissions


def test_every_permission_the_chart_grants_has_an_ablation_scenario() -> None:
    granted = set(permissions(chart_rules(STORES)))
    named = set(SCENARIO_FOR) | set(NOT_PROVEN)
    assert sorted(granted - named) == [], "add these to SCENARIO_FOR"
    assert sorted(named - granted) == [], "the chart no longer grants these"
    assert not set(SCENARIO_FOR) & set(NOT_PROVEN)


def test_every_scenario_the_table_names_exists() -> None:
    named = {name for names in SCENARIO_FOR.values() for name in names.split("|")}
    assert sorted(named - set(SCENARIOS)) == []


def test_the_ablation_stores_make_the_chart_grant_its_conditional_rules() -> None:
    # TokenRequest is granted only for kubernetes-auth stores: the ablation has one.
    assert any(
        key.startswith("core/serviceaccounts/token") for key in permissions(chart_rules(STORES))
    )
