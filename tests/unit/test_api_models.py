"""The models' own behaviour: wire names, defaults, formats and status round trips."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from appinfra.api.common import Condition
from appinfra.api.formats import duration_seconds
from appinfra.api.healthpolicy import HealthPolicySpec
from appinfra.api.kinds import BY_KIND, KINDS
from appinfra.api.ratelimitpolicy import RateLimitPolicySpec
from appinfra.api.secretbinding import SecretBindingSpec, SecretBindingStatus
from appinfra.api.serviceprofile import ServiceProfileSpec, ServiceProfileStatus


def test_to_api_uses_wire_names_and_drops_unset_optionals() -> None:
    spec = ServiceProfileSpec.model_validate(
        {"targetRef": {"name": "api"}, "network": {"allowDNS": False}}
    )
    assert spec.to_api() == {
        "targetRef": {"group": "apps", "kind": "Deployment", "name": "api"},
        "network": {"policyTypes": ["Ingress"], "ingress": [], "egress": [], "allowDNS": False},
    }


def test_python_names_work_in_code() -> None:
    spec = RateLimitPolicySpec(
        target_ref={"kind": "Service", "group": "", "name": "api"},  # type: ignore[arg-type]
        limits={"default": {"requests": 5, "by": {"client_ip": {}}}},  # type: ignore[dict-item]
    )
    assert spec.to_api()["limits"]["default"] == {
        "requests": 5,
        "unit": "Second",
        "by": {"clientIP": {}},
    }


def test_secret_binding_defaults_fill_the_target() -> None:
    spec = SecretBindingSpec.model_validate({"store": "s", "dataFrom": [{"extract": {"key": "k"}}]})
    assert spec.refresh_interval == "1h"
    assert spec.to_api()["target"] == {
        "name": "",
        "type": "Opaque",
        "creationPolicy": "Owner",
        "deletionPolicy": "Retain",
    }


def test_probe_keeps_unknown_core_v1_fields() -> None:
    probe = {"exec": {"command": ["true"]}, "someFutureField": {"x": 1}}
    spec = HealthPolicySpec.model_validate({"targetRef": {"name": "api"}, "startup": probe})
    assert spec.to_api()["startup"] == probe


def test_int_or_percent_keeps_its_type() -> None:
    spec = ServiceProfileSpec.model_validate(
        {"targetRef": {"name": "a"}, "rollout": {"maxSurge": "25%", "maxUnavailable": 0}}
    )
    assert spec.to_api()["rollout"] == {"maxSurge": "25%", "maxUnavailable": 0}
    with pytest.raises(ValidationError, match="percentage"):
        ServiceProfileSpec.model_validate(
            {"targetRef": {"name": "a"}, "rollout": {"maxSurge": True}}
        )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
    ],
)
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "5 minutes", "1d", "h", "-1s"])
def test_duration_seconds_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        duration_seconds(text)


def test_status_round_trips_with_conditions() -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    status = SecretBindingStatus(
        observed_generation=3,
        conditions=[
            Condition(type="Ready", status="True", reason="Synced", last_transition_time=when)
        ],
        secret_hmac="abc",
        synced_keys=["A"],
        last_sync_time=when,
    )
    wire = status.to_api()
    assert wire["secretHMAC"] == "abc"
    assert wire["conditions"][0]["lastTransitionTime"] == "2025-01-02T03:04:05Z"
    assert SecretBindingStatus.model_validate(wire) == status


def test_condition_needs_a_timezone() -> None:
    with pytest.raises(ValidationError):
        Condition(
            type="Ready", status="True", reason="Ok", last_transition_time=datetime(2025, 1, 1)
        )


def test_service_profile_status_replica_range() -> None:
    status = ServiceProfileStatus(
        replica_range="2-10",
        policies=[{"kind": "HealthPolicy", "name": "p", "ready": "True"}],  # type: ignore[list-item]
    )
    assert status.to_api() == {
        "conditions": [],
        "replicaRange": "2-10",
        "policies": [{"kind": "HealthPolicy", "name": "p", "ready": "True"}],
    }


def test_registry() -> None:
    assert [kind.kind for kind in KINDS] == [
        "ServiceProfile",
        "SecretBinding",
        "HealthPolicy",
        "RateLimitPolicy",
    ]
    assert BY_KIND["RateLimitPolicy"].crd_name == "ratelimitpolicies.appinfra.dev"
    assert {kind.short_name for kind in KINDS} == {"sp", "sb", "hp", "rlp"}
