"""The generated CRDs on a real API server: installed, explained, and enforcing the
same rules as `appinfra validate`, with the field named in every rejection."""

from __future__ import annotations

import copy
import json

import pytest

from appinfra.api.kinds import NAME_RULE
from appinfra.api.validation import validate_object
from tests.invalid_specs import INVALID_SPECS, InvalidSpec
from tests.support.kube import Cluster
from tests.support.servers import REPO

KINDS = ("ServiceProfile", "SecretBinding", "HealthPolicy", "RateLimitPolicy")


def test_crds_are_established_with_short_names_and_category(crds: Cluster) -> None:
    resources = crds.kubectl("api-resources", "--api-group=appinfra.dev", "-o", "wide").stdout
    for kind, short in zip(KINDS, ("sp", "sb", "hp", "rlp"), strict=True):
        line = next(line for line in resources.splitlines() if f" {kind} " in f" {line} ")
        assert f" {short} " in f" {line} " and "appinfra" in line, line
    for crd in crds.kubectl_json("get", "crd", "-l", "app.kubernetes.io/part-of=appinfra")["items"]:
        established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
        assert established[0]["status"] == "True", crd["metadata"]["name"]


@pytest.mark.parametrize("case", INVALID_SPECS, ids=lambda c: c.id)
def test_api_server_rejects_invalid_spec_naming_the_field(
    crds: Cluster, namespace: str, case: InvalidSpec
) -> None:
    obj = copy.deepcopy(case.obj)
    obj["metadata"]["namespace"] = namespace
    proc = crds.kubectl("apply", "-f", "-", input=json.dumps(obj), check=False)
    assert proc.returncode != 0, f"accepted: {proc.stdout}"
    assert case.server_path in proc.stderr, proc.stderr
    kind = obj["kind"].lower()
    missing = crds.kubectl("-n", namespace, "get", kind, obj["metadata"]["name"], check=False)
    assert missing.returncode != 0  # nothing was stored


def test_kubectl_explain_shows_descriptions(crds: Cluster) -> None:
    out = crds.kubectl("explain", "serviceprofile.spec.autoscaling").stdout
    assert "HorizontalPodAutoscaler" in out
    for field in ("minReplicas", "maxReplicas", "cpu", "memory", "behavior"):
        assert field in out
    assert "<no description>" not in out
    secret = crds.kubectl("explain", "secretbinding.spec.target.creationPolicy").stdout
    assert "Owner" in secret and "Merge" in secret


def test_examples_apply_cleanly_and_list_under_the_category(crds: Cluster) -> None:
    examples = str(REPO / "examples")
    crds.kubectl("apply", "-f", examples)
    try:
        listed = crds.kubectl("-n", "shop", "get", "appinfra", "-o", "name").stdout.split()
        assert {name.split("/")[0].split(".")[0] for name in listed} == {
            "serviceprofile", "secretbinding", "healthpolicy", "ratelimitpolicy"
        }  # fmt: skip
        table = crds.kubectl("-n", "shop", "get", "serviceprofiles").stdout
        assert table.split()[:4] == ["NAME", "TARGET", "REPLICAS", "READY"]
    finally:
        crds.kubectl("delete", "-f", examples, "--wait=false", check=False)


# ---------------------------------------------------------------- bounds (issue #12)

BOUND_SPECS = {
    "ServiceProfile": {"targetRef": {"kind": "Deployment", "name": "web"}},
    "SecretBinding": {"store": "vault-main",
                      "data": [{"secretKey": "PW", "remoteRef": {"key": "shop/db"}}]},
    "HealthPolicy": {"targetRef": {"kind": "Deployment", "name": "web"}, "gracefulShutdown": {}},
    "RateLimitPolicy": {"targetRef": {"kind": "Deployment", "name": "web"},
                        "limits": {"default": {"requests": 10, "unit": "Second"}}},
}  # fmt: skip


def _bound_obj(kind: str, name: str, namespace: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": "appinfra.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {**BOUND_SPECS[kind], **spec}}  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_api_server_refuses_a_64_character_name_with_the_validate_message(
    crds: Cluster, namespace: str, kind: str
) -> None:
    long, fits = "n" * 64, "n" * 63
    proc = crds.kubectl(
        "apply", "-f", "-", input=json.dumps(_bound_obj(kind, long, namespace)), check=False
    )
    assert proc.returncode != 0, proc.stdout
    assert NAME_RULE.message in proc.stderr, proc.stderr
    assert crds.kubectl("-n", namespace, "get", kind.lower(), long, check=False).returncode != 0
    # `appinfra validate` refuses it with the same words, and both accept 63 characters.
    assert [p.message for p in validate_object(_bound_obj(kind, long, namespace))] == [
        NAME_RULE.message
    ]
    crds.kubectl("apply", "-f", "-", input=json.dumps(_bound_obj(kind, fits, namespace)))
    # Names are immutable; a later update of the object is not refused by the name rule.
    crds.kubectl("-n", namespace, "label", kind.lower(), fits, "touched=yes")
    crds.kubectl("-n", namespace, "delete", kind.lower(), fits, "--wait=false")


@pytest.mark.parametrize(
    ("interval", "accepted"),
    [("1ms", False), ("9s", False), ("0s", False), ("8761h", False),
     ("10000000000h", False), ("0", True), ("10s", True), ("8760h", True), ("1h30m", True)],
)  # fmt: skip
def test_api_server_bounds_refresh_interval_like_validate(
    crds: Cluster, namespace: str, interval: str, accepted: bool
) -> None:
    name = "ri"  # a fresh namespace per case
    obj = _bound_obj("SecretBinding", name, namespace, refreshInterval=interval)
    offline = validate_object(obj)
    proc = crds.kubectl("apply", "-f", "-", input=json.dumps(obj), check=False)
    if accepted:
        assert proc.returncode == 0, proc.stderr
        assert offline == []
        crds.kubectl("-n", namespace, "delete", "secretbinding", name, "--wait=false")
        return
    assert proc.returncode != 0, proc.stdout
    assert "spec.refreshInterval" in proc.stderr, proc.stderr
    assert "evaluation error" not in proc.stderr, proc.stderr  # the rule's message, not a crash
    assert [p.path for p in offline] == ["spec.refreshInterval"]
    if interval != "10000000000h":  # refused by the pattern (at most 5 digits) instead
        assert 'must be "0" (sync once) or between 10s and 8760h' in proc.stderr, proc.stderr
