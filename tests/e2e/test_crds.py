"""The generated CRDs on a real API server: installed, explained, and enforcing the
same rules as `appinfra validate`, with the field named in every rejection."""

from __future__ import annotations

import copy
import json

import pytest

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
