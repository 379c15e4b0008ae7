"""Bounds the schema puts on names and refresh intervals (issue #12, smaller holes): what
`appinfra validate` refuses here, the generated CRDs refuse with the same rule."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from appinfra.api.crds import crd_manifests
from appinfra.api.formats import DURATION
from appinfra.api.kinds import BY_KIND, MAX_NAME_LENGTH
from appinfra.api.secretbinding import SecretBindingSpec
from appinfra.api.validation import validate_object, validate_paths
from appinfra.render.secretbinding import applied_annotation

DATA = [{"secretKey": "PW", "remoteRef": {"key": "shop/db"}}]
SPECS: dict[str, dict[str, Any]] = {
    "ServiceProfile": {"targetRef": {"name": "web"}},
    "SecretBinding": {"store": "vault", "data": DATA},
    "HealthPolicy": {"targetRef": {"name": "web"}, "gracefulShutdown": {}},
    "RateLimitPolicy": {
        "targetRef": {"name": "web"},
        "limits": {"default": {"requests": 10, "unit": "Second"}},
    },
}
# A qualified name's name part (annotation and label keys), as the API server checks it.
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def _obj(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {**SPECS[kind], **spec},
    }


@pytest.mark.parametrize("kind", list(SPECS))
def test_a_64_character_name_is_refused_offline_and_63_is_accepted(kind: str) -> None:
    assert validate_object(_obj(kind, "a" * MAX_NAME_LENGTH)) == []
    problems = validate_object(_obj(kind, "a" * (MAX_NAME_LENGTH + 1)))
    assert [p.path for p in problems] == ["metadata.name"]
    assert "at most 63 characters" in problems[0].message
    assert "aaaa" not in problems[0].message  # the name itself is not echoed


def test_validate_cli_reports_the_long_name(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(_obj("ServiceProfile", "x" * 64)))
    (line,) = validate_paths([str(path)])
    assert f"ServiceProfile/{'x' * 64}: metadata.name: " in line
    assert "at most 63 characters" in line


def test_every_crd_carries_the_name_rule_checked_on_create_only() -> None:
    for manifest in crd_manifests():
        root = manifest["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        (rule,) = root["x-kubernetes-validations"]
        assert rule["rule"] == "oldSelf.hasValue() || self.metadata.name.size() <= 63"
        assert rule["optionalOldSelf"] is True  # names are immutable; legacy objects stay deletable
        assert "at most 63 characters" in rule["message"]
    assert len(crd_manifests()) == len(BY_KIND)


def test_applied_annotation_key_is_always_valid_and_distinct() -> None:
    names = [
        "a" * 60,
        "a" * 61,
        "a" * 62,
        "a" * 59 + "-b",  # the old `name[:60]` ends in "-"
        "a" * 59 + ".b",  # ... or in "."
        "a" * 59 + "-bc",
        "a" * 59 + "-bd",  # same first 60 characters as the one before
        "b" * 63,
    ]
    keys = [applied_annotation(name) for name in names]
    for key in keys:
        prefix, _, part = key.partition("/")
        assert prefix == "appinfra.dev"
        assert len(part) <= 63 and QUALIFIED_NAME.match(part), key
    assert len(set(keys)) == len(names)


def test_applied_annotation_old_derivation_was_invalid() -> None:
    name = "a" * 59 + "-b"  # 61 characters whose 60th is "-"
    old = f"sb.{name[:60]}"
    assert not QUALIFIED_NAME.match(old)
    assert QUALIFIED_NAME.match(applied_annotation(name).partition("/")[2])
    assert applied_annotation("short") == "appinfra.dev/sb.short"  # unchanged when it fits


@pytest.mark.parametrize("interval", ["0", "10s", "1h", "1h30m", "8760h", "10000ms", "0.5h"])
def test_refresh_interval_in_bounds(interval: str) -> None:
    spec = SecretBindingSpec.model_validate(
        {"store": "v", "data": DATA, "refreshInterval": interval}
    )
    assert spec.refresh_interval == interval


@pytest.mark.parametrize(
    ("interval", "path"),
    [
        ("1ms", "spec.refreshInterval"),
        ("9s", "spec.refreshInterval"),
        ("9.999s", "spec.refreshInterval"),
        ("0s", "spec.refreshInterval"),
        ("8760h1s", "spec.refreshInterval"),
        ("8761h", "spec.refreshInterval"),
        ("10000000000h", "spec.refreshInterval"),  # crashed status formatting before
        ("99999h", "spec.refreshInterval"),
    ],
)
def test_refresh_interval_out_of_bounds_is_refused_offline(interval: str, path: str) -> None:
    problems = validate_object(_obj("SecretBinding", "sb", refreshInterval=interval))
    assert [p.path for p in problems] == [path], problems


def test_refresh_interval_rule_in_the_crd() -> None:
    (crd,) = [m for m in crd_manifests() if m["spec"]["names"]["kind"] == "SecretBinding"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = {r.get("fieldPath"): r for r in spec["x-kubernetes-validations"]}
    rule = rules[".refreshInterval"]
    assert "duration('10s')" in rule["rule"] and "duration('8760h')" in rule["rule"]
    assert rule["message"] == 'must be "0" (sync once) or between 10s and 8760h'
    assert spec["properties"]["refreshInterval"]["pattern"] == DURATION.pattern


def test_duration_pattern_cannot_overflow_go_nanoseconds() -> None:
    # The largest value per unit, repeated as often as the length cap allows: still below
    # int64 nanoseconds, so the API server's CEL duration() never fails on an accepted value.
    worst = "99999.999999999h"
    text = worst * (DURATION.max_length // len(worst))
    assert DURATION.accepts(text)
    assert not DURATION.accepts("100000h")
    hours = 100000 * (DURATION.max_length // len("99999h"))
    assert hours * 3600 * 10**9 < 2**63


def test_model_rejects_too_short_interval() -> None:
    with pytest.raises(ValidationError, match="between 10s and 8760h"):
        SecretBindingSpec.model_validate({"store": "v", "data": DATA, "refreshInterval": "1ms"})
