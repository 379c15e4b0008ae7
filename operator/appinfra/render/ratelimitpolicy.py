"""RateLimitPolicy -> ingress-nginx annotations, an envoy ratelimit config or an in-app config.

Pure: the live target comes in as an argument; nothing here reads the cluster,
the clock or randomness. Limits are always rendered in name order, so the same
spec gives byte-identical output however its `limits` map was ordered.

IngressNginx. The rate-limit annotations hold one limit per Ingress, counted
per client IP over a second or a minute, for every path and method. The limit
enforced is `default` when it can be expressed, otherwise the first one that
can, by name. Every other limit is reported as not enforced, with the reason.
A limit without `by` (all clients together) is enforced per client IP, which
is looser, and reported as such. `limit-burst-multiplier` is
ceil(burst / requests), at least 1 because nginx rejects `burst=0`: ingress-nginx
allows requests x multiplier extra, which may round the burst up. Without
`burst` the controller's default multiplier (5) applies. A limit whose requests x
multiplier is past nginx's range ((2^63 - 1) / 1000, as limit_req counts thousandths)
cannot be expressed: nginx would reject the whole configuration.

EnvoyRateLimit. ConfigMap `<name>-ratelimit`, key `config.yaml`, in the
envoyproxy/ratelimit format with domain `<namespace>.<name>`. Each limit is one
top-level descriptor, with a nested level per condition, in this order; the
Envoy route's `rate_limits` actions must send exactly these entries:

    limit=<limit name>        generic_key {descriptor_key: limit, descriptor_value: <name>}
    path_prefix=<prefix>      header_value_match {descriptor_key: path_prefix,
                                descriptor_value: <prefix>, headers: [:path, prefix match]}
    method=<M1,M2>            header_value_match {descriptor_key: method, descriptor_value:
                                "<methods sorted, comma-joined>", headers: [:method, any of them]}
    remote_address            remote_address {}                       (by.clientIP)
    header_<name>             request_headers {header_name: <name>,
                                descriptor_key: header_<name>}        (by.header, lowercased)

`when` conditions are matched by Envoy and sent as fixed values so that all
matching requests share one counter: envoy ratelimit keys its counters on the
request's values, so sending the real path or method would count each path and
method apart. The `rate_limit` sits on the innermost level. Allowlisted client
IPs become `remote_address=<ip>` siblings with `unlimited: true`; envoy
ratelimit matches exact values, so only single addresses are expressible, and
only for limits counted per client IP. A burst has no counterpart (fixed
windows). What cannot be expressed is reported as PartiallyEnforced.

ConfigMap. ConfigMap `<name>-ratelimit`, key `limits.json`, for an in-app
limiter; `json.dumps(sort_keys=True, indent=2)`, so it is byte-stable:

    {
      "version": 1,                      # bumped only for incompatible changes
      "limits": [                        # sorted by name
        {
          "name": "writes",              # the key in spec.limits
          "requests": 10,                # allowed per period
          "unit": "Second",              # Second | Minute | Hour | Day
          "periodSeconds": 1,            # the unit in seconds: 1, 60, 3600, 86400
          "burst": 0,                    # extra requests allowed in a short burst; 0 if unset
          "by": {"clientIP": true},      # or {"header": "x-api-key"} (lowercased), or null:
                                         #   null counts all requests together
          "when": {"pathPrefix": "/orders", "methods": ["POST", "PUT"]}
                                         # null / [] match any path / method; methods sorted
        }
      ],
      "allowlist": ["10.0.0.0/8"]        # canonical CIDRs (single IPs as /32, /128);
                                         #   clients in them are never limited
    }

A request counts against every limit whose `when` matches it. docs/ratelimit-configmap.md
has the same description for application authors.
"""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from appinfra.api.names import Obj
from appinfra.api.ratelimitpolicy import Enforcement, Limit, RateLimitPolicySpec
from appinfra.render.common import Owner, child, target_intent

EnforcedReason = Literal["Enforced", "PartiallyEnforced", "Unsupported"]

ENVOY_KEY = "config.yaml"
LIMITS_KEY = "limits.json"
LIMITS_VERSION = 1
NGINX = "nginx.ingress.kubernetes.io/"
PERIOD_SECONDS = {"Second": 1, "Minute": 60, "Hour": 3600, "Day": 86400}

_NGINX_RATE = {"Second": "limit-rps", "Minute": "limit-rpm"}
# ingress-nginx's multiplier when the annotation is absent.
_NGINX_DEFAULT_MULTIPLIER = 5
# nginx's limit_req keeps rate and burst in thousandths of a request in a 64-bit signed
# integer (`rate * 1000`, `burst * 1000`), so larger values overflow and fail its config.
_NGINX_MAX_REQUESTS = (2**63 - 1) // 1000
_PREFERRED = "default"
_NGINX_ADVICE = "to enforce every limit use enforcement EnvoyRateLimit or ConfigMap"
_ENVOY_ADVICE = "enforcement ConfigMap (an in-app limiter) can express all of it"


@dataclass
class RateLimitRendered:
    """What one RateLimitPolicy asks for, and how much of it the enforcement can express."""

    children: list[Obj] = field(default_factory=list)
    target_intent: Obj | None = None  # IngressNginx: the apply intent for the Ingress
    enforced: bool = False
    reason: EnforcedReason = "Unsupported"
    message: str = ""


def config_map_name(owner: Owner) -> str:
    return f"{owner.name}-ratelimit"


def render_ratelimitpolicy(
    owner: Owner,
    spec: RateLimitPolicySpec,
    target: Obj | None,
    default_enforcement: Enforcement = "IngressNginx",
) -> RateLimitRendered:
    """Everything the policy asks for under its enforcement (or the operator's default).

    `target` is the live object named by spec.targetRef, None if it does not
    exist; only IngressNginx writes to it.
    """
    enforcement = spec.enforcement or default_enforcement
    if enforcement == "IngressNginx":
        return _ingress_nginx(owner, spec, target)
    if enforcement == "EnvoyRateLimit":
        return _envoy(owner, spec)
    return _in_app(owner, spec)


def _by_name(spec: RateLimitPolicySpec) -> list[tuple[str, Limit]]:
    return sorted(spec.limits.items())


def _outcome(
    done: str,
    notes: list[str],
    advice: str,
    children: list[Obj],
    target_intent: Obj | None = None,
) -> RateLimitRendered:
    """Enforced when nothing is left out, else PartiallyEnforced naming what is."""
    if not notes:
        return RateLimitRendered(children, target_intent, True, "Enforced", done)
    message = f"{done}; not enforced: {'; '.join(notes)}; {advice}"
    return RateLimitRendered(children, target_intent, False, "PartiallyEnforced", message)


# IngressNginx


def _nginx_multiplier(limit: Limit) -> int:
    """limit-burst-multiplier for `limit`: nginx's burst is requests x this."""
    if limit.burst is None:
        return _NGINX_DEFAULT_MULTIPLIER
    return max(1, math.ceil(limit.burst / limit.requests))


def _nginx_gaps(limit: Limit) -> list[str]:
    """Why ingress-nginx annotations cannot express `limit`; empty if they can."""
    gaps = []
    if limit.requests * _nginx_multiplier(limit) > _NGINX_MAX_REQUESTS:
        gaps.append(f"requests and burst above nginx's limit of {_NGINX_MAX_REQUESTS}")
    if limit.unit not in _NGINX_RATE:
        gaps.append(f"unit {limit.unit} (ingress-nginx limits per Second or Minute only)")
    if limit.by is not None and limit.by.header is not None:
        gaps.append(f"by.header {limit.by.header} (ingress-nginx counts per client IP only)")
    if limit.when is not None and (limit.when.path_prefix or limit.when.methods):
        gaps.append("when (the annotations apply to every path and method of the Ingress)")
    return gaps


def _ingress_nginx(
    owner: Owner, spec: RateLimitPolicySpec, target: Obj | None
) -> RateLimitRendered:
    ref = spec.target_ref
    if ref.kind != "Ingress":
        return RateLimitRendered(
            message=f"enforcement IngressNginx (the operator's default) needs a targetRef of "
            f"kind Ingress, not {ref.kind} {ref.name}; set spec.enforcement to EnvoyRateLimit "
            "or ConfigMap, or target the Ingress in front of it"
        )
    if target is None:
        return RateLimitRendered(
            message=f"Ingress {ref.name} not found in namespace {owner.namespace}: there is "
            "nothing to annotate; create it or correct spec.targetRef.name"
        )
    gaps = {name: _nginx_gaps(limit) for name, limit in _by_name(spec)}
    expressible = [name for name, why in gaps.items() if not why]
    chosen = _PREFERRED if _PREFERRED in expressible else next(iter(expressible), None)
    notes = [f"{name}: {', '.join(why)}" for name, why in gaps.items() if why]

    meta = target["metadata"]
    intent = target_intent(owner, meta["name"], api_version="networking.k8s.io/v1", kind="Ingress")
    annotations: dict[str, str] = intent["metadata"]["annotations"]
    if chosen is None:
        return RateLimitRendered(
            target_intent=intent,
            message=f"no limit can be expressed as ingress-nginx annotations: "
            f"{'; '.join(notes)}; {_NGINX_ADVICE}",
        )

    limit = spec.limits[chosen]
    annotations[NGINX + _NGINX_RATE[limit.unit]] = str(limit.requests)
    done = f"limit {chosen} ({limit.requests} per {limit.unit.lower()} per client IP"
    if limit.burst is not None:
        multiplier = _nginx_multiplier(limit)
        annotations[NGINX + "limit-burst-multiplier"] = str(multiplier)
        done += f", burst {limit.requests * multiplier}"
        if limit.requests * multiplier != limit.burst:
            done += f" (requests x limit-burst-multiplier; {limit.burst} asked)"
    if spec.allowlist:
        annotations[NGINX + "limit-whitelist"] = ",".join(spec.allowlist)
        done += f", {len(spec.allowlist)} allowlist entries exempt"
    done += f") enforced by ingress-nginx annotations on Ingress {meta['name']}"

    if limit.by is None:
        notes.insert(0, f"{chosen}: counted per client IP, not across all clients together")
    notes += [
        f"{name}: ingress-nginx takes one limit per Ingress and {chosen} is enforced"
        for name in expressible
        if name != chosen
    ]
    return _outcome(done, notes, _NGINX_ADVICE, [], intent)


# EnvoyRateLimit


def _exact_address(entry: str) -> str | None:
    """The single address `entry` stands for, as Envoy formats it; None for a real range."""
    network = ipaddress.ip_network(entry, strict=False)
    if network.num_addresses != 1:
        return None
    return str(network.network_address)


def _envoy_descriptor(name: str, limit: Limit, exempt: list[str]) -> Obj:
    levels: list[Obj] = [{"key": "limit", "value": name}]
    if limit.when is not None and limit.when.path_prefix:
        levels.append({"key": "path_prefix", "value": limit.when.path_prefix})
    if limit.when is not None and limit.when.methods:
        levels.append({"key": "method", "value": ",".join(sorted(limit.when.methods))})
    if limit.by is not None and limit.by.header is not None:
        levels.append({"key": f"header_{limit.by.header.lower()}"})
    elif limit.by is not None:
        levels.append({"key": "remote_address"})
    levels[-1]["rate_limit"] = {"unit": limit.unit.lower(), "requests_per_unit": limit.requests}
    siblings: list[Obj] = [levels.pop()]
    if siblings[0]["key"] == "remote_address":
        siblings += [
            {"key": "remote_address", "value": ip, "rate_limit": {"unlimited": True}}
            for ip in exempt
        ]
    for level in reversed(levels):
        siblings = [{**level, "descriptors": siblings}]
    return siblings[0]


def envoy_config(owner: Owner, spec: RateLimitPolicySpec) -> tuple[Obj, list[str]]:
    """The envoy ratelimit config, and what in the spec it cannot express."""
    limits = _by_name(spec)
    notes: list[str] = []
    exempt: list[str] = []
    for entry in spec.allowlist:
        address = _exact_address(entry)
        if address is None:
            notes.append(
                f"allowlist {entry}: envoy ratelimit matches exact client addresses only; "
                "list single IPs"
            )
        elif address not in exempt:
            exempt.append(address)
    per_ip = [name for name, limit in limits if limit.by is not None and limit.by.client_ip]
    if spec.allowlist and len(per_ip) < len(limits):
        others = ", ".join(name for name, _ in limits if name not in per_ip)
        notes.append(
            f"allowlist for limits {others}: envoy ratelimit can exempt addresses only from "
            "limits counted by clientIP"
        )
    notes += [
        f"{name}: burst (envoy ratelimit counts fixed windows without burst)"
        for name, limit in limits
        if limit.burst
    ]
    config = {
        "domain": f"{owner.namespace}.{owner.name}",
        "descriptors": [_envoy_descriptor(name, limit, exempt) for name, limit in limits],
    }
    return config, notes


def _envoy(owner: Owner, spec: RateLimitPolicySpec) -> RateLimitRendered:
    config, notes = envoy_config(owner, spec)
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    name = config_map_name(owner)
    cm = child(owner, "v1", "ConfigMap", name, data={ENVOY_KEY: text})
    done = (
        f"{len(spec.limits)} limits in ConfigMap {name} key {ENVOY_KEY} for envoy ratelimit "
        f"domain {config['domain']}"
    )
    return _outcome(done, notes, _ENVOY_ADVICE, [cm])


# ConfigMap (in-app limiter)


def _limit_entry(name: str, limit: Limit) -> dict[str, Any]:
    by: dict[str, Any] | None = None
    if limit.by is not None and limit.by.header is not None:
        by = {"header": limit.by.header.lower()}
    elif limit.by is not None:
        by = {"clientIP": True}
    when = limit.when
    return {
        "name": name,
        "requests": limit.requests,
        "unit": limit.unit,
        "periodSeconds": PERIOD_SECONDS[limit.unit],
        "burst": limit.burst or 0,
        "by": by,
        "when": {
            "pathPrefix": when.path_prefix if when else None,
            "methods": sorted(when.methods) if when else [],
        },
    }


def limits_json(spec: RateLimitPolicySpec) -> str:
    """The `limits.json` document (schema in the module docstring)."""
    document = {
        "version": LIMITS_VERSION,
        "limits": [_limit_entry(name, limit) for name, limit in _by_name(spec)],
        "allowlist": list(
            dict.fromkeys(
                ipaddress.ip_network(entry, strict=False).with_prefixlen for entry in spec.allowlist
            )
        ),
    }
    return json.dumps(document, sort_keys=True, indent=2) + "\n"


def _in_app(owner: Owner, spec: RateLimitPolicySpec) -> RateLimitRendered:
    """Everything is expressible: the application enforces what the document says."""
    name = config_map_name(owner)
    cm = child(owner, "v1", "ConfigMap", name, data={LIMITS_KEY: limits_json(spec)})
    done = f"{len(spec.limits)} limits in ConfigMap {name} key {LIMITS_KEY} for the in-app limiter"
    return RateLimitRendered([cm], None, True, "Enforced", done)
