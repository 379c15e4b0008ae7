import ipaddress
import json
import re
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from appinfra.api.ratelimitpolicy import RateLimitPolicySpec
from appinfra.render.common import Owner
from appinfra.render.ratelimitpolicy import PERIOD_SECONDS, render_ratelimitpolicy

OWNER = Owner("RateLimitPolicy", "payments", "shop", "uid-1")
INGRESS_REF = {"group": "networking.k8s.io", "kind": "Ingress", "name": "payments-web"}
INGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {"name": "payments-web", "namespace": "shop", "annotations": {"x": "y"}},
    "spec": {"ingressClassName": "nginx"},
}
NGINX = "nginx.ingress.kubernetes.io/"
PER_IP: dict[str, Any] = {"clientIP": {}}


def spec(limits: dict[str, Any], **fields: Any) -> RateLimitPolicySpec:
    fields.setdefault("targetRef", INGRESS_REF)
    return RateLimitPolicySpec.model_validate({"limits": limits, **fields})


def nginx(limits: dict[str, Any], **fields: Any) -> Any:
    return render_ratelimitpolicy(
        OWNER, spec(limits, enforcement="IngressNginx", **fields), INGRESS
    )


def annotations(out: Any) -> dict[str, str]:
    return dict(out.target_intent["metadata"]["annotations"])


# IngressNginx


def test_nginx_rps_per_client_ip_is_enforced() -> None:
    out = nginx({"default": {"requests": 100, "by": PER_IP}})
    assert (out.enforced, out.reason) == (True, "Enforced")
    assert out.children == []
    assert out.target_intent["apiVersion"] == "networking.k8s.io/v1"
    assert out.target_intent["kind"] == "Ingress"
    assert out.target_intent["metadata"]["name"] == "payments-web"
    assert out.target_intent["metadata"]["namespace"] == "shop"
    assert annotations(out) == {
        "appinfra.dev/ratelimitpolicy": "payments",
        NGINX + "limit-rps": "100",
    }
    assert "limit default" in out.message and "payments-web" in out.message


def test_nginx_rpm() -> None:
    out = nginx({"default": {"requests": 600, "unit": "Minute", "by": PER_IP}})
    assert out.reason == "Enforced"
    assert annotations(out)[NGINX + "limit-rpm"] == "600"
    assert NGINX + "limit-rps" not in annotations(out)


@pytest.mark.parametrize(
    ("requests", "burst", "multiplier"),
    [(100, 200, "2"), (100, 250, "3"), (10, 10, "1"), (10, 1, "1"), (10, 0, "1"), (3, 100, "34")],
)
def test_nginx_burst_multiplier_is_ceil_of_burst_over_requests(
    requests: int, burst: int, multiplier: str
) -> None:
    out = nginx({"default": {"requests": requests, "burst": burst, "by": PER_IP}})
    assert out.reason == "Enforced"
    assert annotations(out)[NGINX + "limit-burst-multiplier"] == multiplier


def test_nginx_no_burst_no_multiplier() -> None:
    out = nginx({"default": {"requests": 5, "by": PER_IP}})
    assert NGINX + "limit-burst-multiplier" not in annotations(out)


def test_nginx_whitelist_is_the_comma_joined_allowlist() -> None:
    out = nginx({"default": {"requests": 5, "by": PER_IP}}, allowlist=["10.0.0.0/8", "192.168.1.7"])
    assert annotations(out)[NGINX + "limit-whitelist"] == "10.0.0.0/8,192.168.1.7"
    assert out.reason == "Enforced"


def test_nginx_partially_enforced_names_each_limit_left_out_and_why() -> None:
    out = nginx(
        {
            "default": {"requests": 100, "burst": 200, "by": PER_IP},
            "writes": {"requests": 10, "when": {"pathPrefix": "/orders", "methods": ["POST"]}},
            "daily": {"requests": 10000, "unit": "Day", "by": PER_IP},
            "keys": {"requests": 50, "by": {"header": "x-api-key"}},
            "other": {"requests": 7, "by": PER_IP},
        }
    )
    assert (out.enforced, out.reason) == (False, "PartiallyEnforced")
    assert annotations(out)[NGINX + "limit-rps"] == "100"
    message = out.message
    assert message.startswith("limit default ")
    assert "writes: when" in message
    assert "daily: unit Day" in message
    assert "keys: by.header x-api-key" in message
    assert "other: ingress-nginx takes one limit per Ingress and default is enforced" in message
    assert "EnvoyRateLimit or ConfigMap" in message


def test_nginx_enforces_the_first_expressible_by_name_without_a_default() -> None:
    out = nginx(
        {
            "alpha": {"requests": 1, "unit": "Hour", "by": PER_IP},
            "beta": {"requests": 20, "unit": "Minute", "by": PER_IP},
            "gamma": {"requests": 30, "by": PER_IP},
        }
    )
    assert out.reason == "PartiallyEnforced"
    assert annotations(out)[NGINX + "limit-rpm"] == "20"
    assert "alpha: unit Hour" in out.message
    assert "gamma: ingress-nginx takes one limit per Ingress and beta is enforced" in out.message


def test_nginx_default_is_preferred_over_earlier_names() -> None:
    out = nginx({"api": {"requests": 1, "by": PER_IP}, "default": {"requests": 2, "by": PER_IP}})
    assert annotations(out)[NGINX + "limit-rps"] == "2"
    assert "api: ingress-nginx takes one limit per Ingress and default" in out.message


def test_nginx_limit_for_all_clients_is_only_approximated_per_ip() -> None:
    out = nginx({"default": {"requests": 100}})
    assert out.reason == "PartiallyEnforced"
    assert annotations(out)[NGINX + "limit-rps"] == "100"
    assert "default: counted per client IP" in out.message


def test_nginx_empty_when_matches_everything_and_is_expressible() -> None:
    out = nginx({"default": {"requests": 100, "by": PER_IP, "when": {}}})
    assert out.reason == "Enforced"


def test_nginx_unsupported_when_no_limit_is_expressible() -> None:
    out = nginx(
        {
            "daily": {"requests": 1000, "unit": "Day"},
            "keys": {"requests": 5, "by": {"header": "x-api-key"}},
        },
        allowlist=["10.0.0.0/8"],
    )
    assert (out.enforced, out.reason) == (False, "Unsupported")
    assert "daily: unit Day" in out.message and "keys: by.header x-api-key" in out.message
    # the intent still carries our annotation, so applying it drops limits set earlier
    assert annotations(out) == {"appinfra.dev/ratelimitpolicy": "payments"}


def test_nginx_needs_an_ingress_target() -> None:
    service = {"group": "", "kind": "Service", "name": "payments"}
    out = render_ratelimitpolicy(
        OWNER, spec({"default": {"requests": 1}}, targetRef=service), {"metadata": {}}
    )  # enforcement unset: the operator default applies
    assert (out.reason, out.target_intent) == ("Unsupported", None)
    assert "Service payments" in out.message and "spec.enforcement" in out.message


def test_nginx_missing_ingress() -> None:
    out = render_ratelimitpolicy(
        OWNER, spec({"default": {"requests": 1}}, enforcement="IngressNginx"), None
    )
    assert (out.enforced, out.target_intent) == (False, None)
    assert "Ingress payments-web not found" in out.message


def test_default_enforcement_is_the_callers() -> None:
    out = render_ratelimitpolicy(
        OWNER, spec({"default": {"requests": 1}}), None, default_enforcement="ConfigMap"
    )
    assert out.children[0]["data"].keys() == {"limits.json"}


# EnvoyRateLimit


def envoy(limits: dict[str, Any], **fields: Any) -> tuple[Any, dict[str, Any]]:
    out = render_ratelimitpolicy(OWNER, spec(limits, enforcement="EnvoyRateLimit", **fields), None)
    (cm,) = out.children
    assert out.target_intent is None
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    assert cm["metadata"]["name"] == "payments-ratelimit"
    assert cm["metadata"]["namespace"] == "shop"
    assert cm["metadata"]["labels"]["appinfra.dev/owner-kind"] == "RateLimitPolicy"
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    return out, yaml.safe_load(cm["data"]["config.yaml"])


def test_envoy_config_has_one_descriptor_per_limit() -> None:
    out, config = envoy(
        {
            "default": {"requests": 100, "by": PER_IP},
            "writes": {
                "requests": 10,
                "unit": "Minute",
                "when": {"pathPrefix": "/orders", "methods": ["PUT", "POST"]},
            },
            "keys": {"requests": 5000, "unit": "Day", "by": {"header": "X-Api-Key"}},
            "all": {"requests": 3, "unit": "Hour"},
        }
    )
    assert (out.enforced, out.reason) == (True, "Enforced")
    assert config["domain"] == "shop.payments"
    assert [(d["key"], d["value"]) for d in config["descriptors"]] == [
        ("limit", "all"),
        ("limit", "default"),
        ("limit", "keys"),
        ("limit", "writes"),
    ]
    all_, default, keys, writes = config["descriptors"]
    assert all_["rate_limit"] == {"unit": "hour", "requests_per_unit": 3}
    assert "descriptors" not in all_
    assert default["descriptors"] == [
        {"key": "remote_address", "rate_limit": {"unit": "second", "requests_per_unit": 100}}
    ]
    assert keys["descriptors"] == [
        {"key": "header_x-api-key", "rate_limit": {"unit": "day", "requests_per_unit": 5000}}
    ]
    (path,) = writes["descriptors"]
    assert (path["key"], path["value"]) == ("path_prefix", "/orders")
    (method,) = path["descriptors"]
    assert (method["key"], method["value"]) == ("method", "POST,PUT")
    assert method["rate_limit"] == {"unit": "minute", "requests_per_unit": 10}


def test_envoy_allowlist_addresses_are_unlimited_under_per_ip_limits() -> None:
    out, config = envoy(
        {"default": {"requests": 100, "by": PER_IP}},
        allowlist=["192.168.1.7", "192.168.1.7/32", "2001:db8:0::1/128"],
    )
    assert out.reason == "Enforced"
    (default,) = config["descriptors"]
    assert default["descriptors"][1:] == [
        {"key": "remote_address", "value": "192.168.1.7", "rate_limit": {"unlimited": True}},
        {"key": "remote_address", "value": "2001:db8::1", "rate_limit": {"unlimited": True}},
    ]


def test_envoy_cidr_allowlist_is_partially_enforced() -> None:
    out, config = envoy({"default": {"requests": 100, "by": PER_IP}}, allowlist=["10.0.0.0/8"])
    assert (out.enforced, out.reason) == (False, "PartiallyEnforced")
    assert "allowlist 10.0.0.0/8" in out.message
    assert config["descriptors"][0]["descriptors"] == [
        {"key": "remote_address", "rate_limit": {"unit": "second", "requests_per_unit": 100}}
    ]


def test_envoy_allowlist_cannot_exempt_from_limits_not_counted_per_ip() -> None:
    out, _ = envoy(
        {"default": {"requests": 100, "by": PER_IP}, "global": {"requests": 1000}},
        allowlist=["10.1.2.3"],
    )
    assert out.reason == "PartiallyEnforced"
    assert "allowlist for limits global" in out.message
    assert "default" not in out.message.split("not enforced:")[1]


def test_envoy_burst_is_partially_enforced() -> None:
    out, config = envoy({"default": {"requests": 100, "burst": 50, "by": PER_IP}})
    assert out.reason == "PartiallyEnforced"
    assert "default: burst" in out.message
    assert config["descriptors"][0]["descriptors"][0]["rate_limit"]["requests_per_unit"] == 100


# ConfigMap (in-app limiter)


def test_limits_json_round_trips_every_field() -> None:
    out = render_ratelimitpolicy(
        OWNER,
        spec(
            {
                "default": {"requests": 100, "burst": 200, "by": PER_IP},
                "writes": {
                    "requests": 10,
                    "unit": "Minute",
                    "when": {"pathPrefix": "/orders", "methods": ["PUT", "POST"]},
                },
                "keys": {"requests": 5, "unit": "Day", "by": {"header": "X-Api-Key"}},
            },
            enforcement="ConfigMap",
            allowlist=["10.0.0.0/8", "192.168.1.7", "2001:db8::1"],
        ),
        None,
    )
    assert (out.enforced, out.reason, out.target_intent) == (True, "Enforced", None)
    (cm,) = out.children
    assert cm["metadata"]["name"] == "payments-ratelimit"
    text = cm["data"]["limits.json"]
    document = json.loads(text)
    assert text == json.dumps(document, sort_keys=True, indent=2) + "\n"
    assert document == {
        "version": 1,
        "allowlist": ["10.0.0.0/8", "192.168.1.7/32", "2001:db8::1/128"],
        "limits": [
            {
                "name": "default",
                "requests": 100,
                "unit": "Second",
                "periodSeconds": 1,
                "burst": 200,
                "by": {"clientIP": True},
                "when": {"pathPrefix": None, "methods": []},
            },
            {
                "name": "keys",
                "requests": 5,
                "unit": "Day",
                "periodSeconds": 86400,
                "burst": 0,
                "by": {"header": "x-api-key"},
                "when": {"pathPrefix": None, "methods": []},
            },
            {
                "name": "writes",
                "requests": 10,
                "unit": "Minute",
                "periodSeconds": 60,
                "burst": 0,
                "by": None,
                "when": {"pathPrefix": "/orders", "methods": ["POST", "PUT"]},
            },
        ],
    }


# Properties over any valid policy

names = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
limit_bodies = st.fixed_dictionaries(
    {"requests": st.integers(1, 10**6)},
    optional={
        "unit": st.sampled_from(list(PERIOD_SECONDS)),
        "burst": st.integers(0, 10**6),
        "by": st.sampled_from([PER_IP, {"header": "x-api-key"}, {"header": "X-Tenant"}]),
        "when": st.fixed_dictionaries(
            {},
            optional={
                "pathPrefix": st.sampled_from(["/", "/orders", "/a b/ü"]),
                "methods": st.lists(
                    st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
                    unique=True,
                    max_size=7,
                ),
            },
        ),
    },
)
policies = st.fixed_dictionaries(
    {
        "limits": st.dictionaries(names, limit_bodies, min_size=1, max_size=6),
        "enforcement": st.sampled_from(["IngressNginx", "EnvoyRateLimit", "ConfigMap"]),
    },
    optional={
        "allowlist": st.lists(
            st.ip_addresses().map(str) | st.sampled_from(["10.0.0.0/8", "fd00::/8"]), max_size=4
        )
    },
)


def rendered(policy: dict[str, Any]) -> Any:
    return render_ratelimitpolicy(OWNER, spec(**policy), INGRESS)


@settings(max_examples=200)
@given(policies)
def test_any_policy_renders_the_same_whatever_the_order_of_its_limits(
    policy: dict[str, Any],
) -> None:
    reordered = {**policy, "limits": dict(reversed(list(policy["limits"].items())))}
    assert rendered(policy) == rendered(reordered)


def named_in(message: str) -> set[str]:
    """The limit names a message reports as left out ("<name>: why", joined by "; ")."""
    pieces = (
        piece.split("annotations: ")[-1].split("not enforced: ")[-1]
        for piece in message.split("; ")
    )
    return {m.group(1) for piece in pieces if (m := re.match(r"([a-z0-9-]+): ", piece))}


@settings(max_examples=200)
@given(policies)
def test_any_policy_reports_a_consistent_outcome(policy: dict[str, Any]) -> None:
    out = rendered(policy)
    limits = set(policy["limits"])
    assert out.enforced == (out.reason == "Enforced")
    if policy["enforcement"] != "IngressNginx":
        assert out.target_intent is None
        assert out.reason != "Unsupported"
        return
    assert out.children == []
    assert out.target_intent is not None
    named = named_in(out.message)
    if out.reason == "Enforced":
        assert len(limits) == 1 and named == set()
    elif out.reason == "PartiallyEnforced":
        assert len(limits - named) <= 1 and named <= limits
        assert {NGINX + "limit-rps", NGINX + "limit-rpm"} & set(annotations(out))
    else:
        assert named == limits
        assert annotations(out) == {"appinfra.dev/ratelimitpolicy": "payments"}


@settings(max_examples=200)
@given(policies.map(lambda p: {**p, "enforcement": "EnvoyRateLimit"}))
def test_any_policy_gives_a_valid_envoy_config(policy: dict[str, Any]) -> None:
    config = yaml.safe_load(rendered(policy).children[0]["data"]["config.yaml"])
    assert set(config) == {"domain", "descriptors"}
    assert config["domain"] == "shop.payments"
    limits = policy["limits"]
    assert [d["value"] for d in config["descriptors"]] == sorted(limits)

    for top in config["descriptors"]:
        limit = limits[top["value"]]
        node, keys = top, ["limit"]
        while "descriptors" in node:
            levels = node["descriptors"]
            composite = [(d["key"], d.get("value")) for d in levels]
            assert len(set(composite)) == len(composite)  # envoy ratelimit rejects duplicates
            for extra in levels[1:]:  # allowlisted addresses beside the per-IP counter
                assert extra["key"] == "remote_address"
                assert extra["rate_limit"] == {"unlimited": True}
                assert ipaddress.ip_address(extra["value"])
            node = levels[0]
            keys.append(node["key"])
        when = limit.get("when", {})
        expected = ["limit"]
        expected += ["path_prefix"] if when.get("pathPrefix") else []
        expected += ["method"] if when.get("methods") else []
        by = limit.get("by")
        expected += (
            []
            if by is None
            else ["remote_address" if "clientIP" in by else f"header_{by['header'].lower()}"]
        )
        assert keys == expected
        assert node["rate_limit"] == {
            "unit": limit.get("unit", "Second").lower(),
            "requests_per_unit": limit["requests"],
        }


@settings(max_examples=200)
@given(policies.map(lambda p: {**p, "enforcement": "ConfigMap"}))
def test_any_policy_gives_a_limits_json_with_every_limit(policy: dict[str, Any]) -> None:
    document = json.loads(rendered(policy).children[0]["data"]["limits.json"])
    assert document["version"] == 1
    assert [entry["name"] for entry in document["limits"]] == sorted(policy["limits"])
    for entry in document["limits"]:
        limit = policy["limits"][entry["name"]]
        assert entry["requests"] == limit["requests"]
        assert entry["periodSeconds"] == PERIOD_SECONDS[limit.get("unit", "Second")]
        assert entry["burst"] == limit.get("burst", 0)
    for cidr in document["allowlist"]:
        assert str(ipaddress.ip_network(cidr)) == cidr  # canonical: strict parse round-trips
