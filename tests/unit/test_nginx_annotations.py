"""Every ingress-nginx annotation appinfra writes, checked against ingress-nginx's own rules.

Only appinfra's tests parsed these annotations before; a misspelt name (`limit-rsp`) or a
value ingress-nginx rejects would have passed them. The table below is ingress-nginx's,
not ours:

- Names, and which validator each one has: the `rateLimitAnnotations` table in
  https://github.com/kubernetes/ingress-nginx/blob/main/internal/ingress/annotations/ratelimit/main.go
  (limit-rps, limit-rpm, limit-connections, limit-rate, limit-rate-after and
  limit-burst-multiplier: `parser.ValidateInt`; limit-allowlist with its alias
  limit-whitelist: `parser.ValidateCIDRs`), documented for users in
  https://kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/annotations/#rate-limiting
- `ValidateInt` is Go's `strconv.Atoi` (a signed decimal that fits the 64-bit int the
  controller is built with), `ValidateCIDRs` is `net.ParseCIDRs`: split on ",", trim
  spaces, each piece Go's `net.ParseCIDR` or else `net.ParseIP` (no zone):
  https://github.com/kubernetes/ingress-nginx/blob/main/internal/ingress/annotations/parser/validators.go
  and https://github.com/kubernetes/ingress-nginx/blob/main/internal/net/ipnet.go
- What the integers mean, which narrows the ranges: limit-rps/limit-rpm of 0 disable the
  limit (the parser skips the zones when all are 0), and the controller computes the
  nginx `burst` as limit x limit-burst-multiplier in a Go int, which nginx's `limit_req`
  needs to be positive (https://nginx.org/en/docs/http/ngx_http_limit_req_module.html).

The values are checked over a property-based sample of policies, so a renderer change that
emits something outside these rules fails here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from appinfra.api.ratelimitpolicy import RateLimitPolicySpec
from appinfra.render.common import Owner
from appinfra.render.ratelimitpolicy import render_ratelimitpolicy

PREFIX = "nginx.ingress.kubernetes.io/"
GO_INT_MAX = 2**63 - 1  # strconv.Atoi on the controller's 64-bit builds
# nginx's limit_req_zone and limit_req store `rate * 1000` and `burst * 1000` in a 64-bit
# ngx_int_t (src/http/modules/ngx_http_limit_req_module.c), so both stay below this.
NGINX_MAX = GO_INT_MAX // 1000
OWNER = Owner("RateLimitPolicy", "payments", "shop", "uid-1")
INGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {"name": "payments-web", "namespace": "shop"},
    "spec": {"ingressClassName": "nginx"},
}


def go_atoi(value: str) -> int | None:
    """strconv.Atoi: optional sign, ASCII decimal digits, in int64; None if it fails."""
    if not re.fullmatch(r"[+-]?[0-9]+", value):
        return None
    number = int(value)
    return number if -(2**63) <= number <= GO_INT_MAX else None


def go_parse_ip(value: str) -> bool:
    """net.ParseIP: dotted IPv4 without leading zeros, or IPv6 without a zone."""
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def go_parse_cidr(value: str) -> bool:
    """net.ParseCIDR: an address (no zone), "/", a decimal prefix within the family's bits."""
    address, slash, prefix = value.partition("/")
    if not slash or not go_parse_ip(address) or not re.fullmatch(r"[0-9]+", prefix):
        return False
    bits = 32 if ipaddress.ip_address(address).version == 4 else 128
    return int(prefix) <= bits


def valid_cidrs(value: str) -> bool:
    """net.ParseCIDRs as ingress-nginx's ValidateCIDRs runs it."""
    pieces = [piece.strip(" \t\n\v\f\r") for piece in value.split(",")]
    return all(go_parse_cidr(p) or go_parse_ip(p) for p in pieces)


def positive_int(value: str) -> bool:
    number = go_atoi(value)
    return number is not None and number >= 1


# name -> the rule its value must meet (ingress-nginx's validator, narrowed by what the value
# means for an enabled limit). Anything else under the prefix is a name ingress-nginx does not
# know, and it ignores it silently: that is the typo this test exists to catch.
RULES: dict[str, Callable[[str], bool]] = {
    "limit-rps": positive_int,
    "limit-rpm": positive_int,
    "limit-connections": positive_int,
    "limit-rate": lambda v: (n := go_atoi(v)) is not None and n >= 0,
    "limit-rate-after": lambda v: (n := go_atoi(v)) is not None and n >= 0,
    "limit-burst-multiplier": positive_int,
    "limit-allowlist": valid_cidrs,
    "limit-whitelist": valid_cidrs,  # the alias ingress-nginx still reads
}


def check_nginx_annotations(annotations: dict[str, str]) -> list[str]:
    """Every violation of ingress-nginx's rules in `annotations` (names only, no values)."""
    problems = []
    ours = {k.removeprefix(PREFIX): v for k, v in annotations.items() if k.startswith(PREFIX)}
    for name, value in sorted(ours.items()):
        rule = RULES.get(name)
        if rule is None:
            problems.append(f"{name}: not an ingress-nginx rate-limit annotation")
        elif not rule(value):
            problems.append(f"{name}: value fails ingress-nginx's validation")
    if "limit-allowlist" in ours and "limit-whitelist" in ours:
        problems.append("limit-allowlist and limit-whitelist: only one is read")
    # The controller passes limit x multiplier (default 5) to nginx as the burst.
    multiplier = go_atoi(ours.get("limit-burst-multiplier", "5")) or 0
    for rate in ("limit-rps", "limit-rpm"):
        limit = go_atoi(ours.get(rate, "0")) or 0
        if limit and not 1 <= limit * multiplier <= NGINX_MAX:
            problems.append(f"{rate} x limit-burst-multiplier: burst out of nginx's range")
    if bool(ours.get("limit-rps")) and bool(ours.get("limit-rpm")):
        # Not an ingress-nginx rule but appinfra's: one limit per Ingress (render docstring).
        problems.append("limit-rps and limit-rpm: appinfra enforces one limit per Ingress")
    return problems


def render(policy: dict[str, Any]) -> dict[str, str]:
    spec = RateLimitPolicySpec.model_validate(
        {
            "targetRef": {"group": "networking.k8s.io", "kind": "Ingress", "name": "payments-web"},
            "enforcement": "IngressNginx",
            **policy,
        }
    )
    out = render_ratelimitpolicy(OWNER, spec, INGRESS)
    assert out.target_intent is not None
    return dict(out.target_intent["metadata"]["annotations"])


# The checker itself: each rule rejects what ingress-nginx rejects.
@pytest.mark.parametrize(
    ("annotations", "problem"),
    [
        ({"limit-rsp": "10"}, "limit-rsp: not an ingress-nginx rate-limit annotation"),
        ({"limit-rps": "10/s"}, "limit-rps: value fails"),
        ({"limit-rps": "0"}, "limit-rps: value fails"),
        ({"limit-rpm": "1.5"}, "limit-rpm: value fails"),
        ({"limit-rps": str(2**63)}, "limit-rps: value fails"),
        ({"limit-rps": "10", "limit-burst-multiplier": "0"}, "limit-burst-multiplier: value"),
        ({"limit-rps": str(2**62), "limit-burst-multiplier": "2"}, "burst out of nginx's range"),
        ({"limit-rps": str(NGINX_MAX)}, "burst out of nginx's range"),  # default multiplier 5
        ({"limit-whitelist": "10.0.0.0/8;10.1.0.0/16"}, "limit-whitelist: value fails"),
        ({"limit-whitelist": "10.0.0.0/33"}, "limit-whitelist: value fails"),
        ({"limit-whitelist": "010.0.0.1"}, "limit-whitelist: value fails"),
        ({"limit-whitelist": "fe80::1%eth0"}, "limit-whitelist: value fails"),
        ({"limit-rps": "1", "limit-rpm": "1"}, "limit-rps and limit-rpm"),
    ],
)
def test_checker_rejects_what_ingress_nginx_rejects(
    annotations: dict[str, str], problem: str
) -> None:
    problems = check_nginx_annotations({PREFIX + k: v for k, v in annotations.items()})
    assert any(problem in p for p in problems), problems


def test_checker_accepts_what_ingress_nginx_accepts() -> None:
    good = {
        "limit-rps": "100",
        "limit-burst-multiplier": "3",
        "limit-whitelist": "10.0.0.0/8, 192.168.1.7,2001:db8::/32,::1,10.0.0.1/8",
    }
    assert check_nginx_annotations({PREFIX + k: v for k, v in good.items()}) == []


# The renderer's output over any valid policy.

limit_bodies = st.fixed_dictionaries(
    {"requests": st.integers(1, 10**9)},  # the API's bound
    optional={
        "unit": st.sampled_from(["Second", "Minute", "Hour", "Day"]),
        "burst": st.one_of(st.integers(0, 1000), st.integers(0, 10**9)),
        "by": st.sampled_from([{"clientIP": {}}, {"header": "x-api-key"}]),
        "when": st.sampled_from([{}, {"pathPrefix": "/orders"}, {"methods": ["POST"]}]),
    },
)
allowlist_entries = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda a: f"{a}/{a.max_prefixlen // 2}"),
    st.ip_addresses(v=6).map(lambda a: f"{a}/64"),
    st.sampled_from(["10.0.0.0/8", "fd00::/8", "::ffff:10.0.0.1", "0.0.0.0/0"]),
)
policies = st.fixed_dictionaries(
    {
        "limits": st.dictionaries(
            st.sampled_from(["default", "reads", "writes", "a", "z"]), limit_bodies, min_size=1
        )
    },
    optional={"allowlist": st.lists(allowlist_entries, max_size=8)},
)


@settings(max_examples=300)
@given(policies)
def test_every_emitted_annotation_meets_ingress_nginx_rules(policy: dict[str, Any]) -> None:
    annotations = render(policy)
    assert check_nginx_annotations(annotations) == []


def test_a_sample_policy_emits_each_annotation_the_renderer_knows() -> None:
    """The property above must see every name the renderer can write, not just the rate."""
    per_second = render(
        {
            "limits": {"default": {"requests": 10, "burst": 25, "by": {"clientIP": {}}}},
            "allowlist": ["10.0.0.0/8", "2001:db8::1"],
        }
    )
    per_minute = render({"limits": {"default": {"requests": 10, "unit": "Minute"}}})
    names = {k.removeprefix(PREFIX) for k in {**per_second, **per_minute} if k.startswith(PREFIX)}
    assert names == {"limit-rps", "limit-rpm", "limit-burst-multiplier", "limit-whitelist"}
    assert check_nginx_annotations(per_second) == []
    assert check_nginx_annotations(per_minute) == []


def test_a_limit_nginx_cannot_hold_is_reported_not_written() -> None:
    """Found by the property above: nginx would reject `burst = requests x 5` past its range,
    failing the controller's whole config reload. The API now refuses such a limit (at most
    10^9); should one reach the renderer anyway, it is left out and says why."""
    body = {
        "targetRef": {"group": "networking.k8s.io", "kind": "Ingress", "name": "payments-web"},
        "enforcement": "IngressNginx",
        "limits": {"default": {"requests": NGINX_MAX, "by": {"clientIP": {}}}},
    }
    with pytest.raises(ValidationError, match="less than or equal to 1000000000"):
        RateLimitPolicySpec.model_validate(body)
    body["limits"] = {"default": {"requests": 1, "by": {"clientIP": {}}}}
    spec = RateLimitPolicySpec.model_validate(body)
    spec.limits["default"].requests = NGINX_MAX  # past the API, as an older object might be
    out = render_ratelimitpolicy(OWNER, spec, INGRESS)
    assert out.reason == "Unsupported"
    assert "default: requests and burst above nginx's limit" in out.message
    assert out.target_intent is not None
    assert check_nginx_annotations(out.target_intent["metadata"]["annotations"]) == []
