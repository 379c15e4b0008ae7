"""The EnvoyRateLimit ConfigMap, read by the real envoyproxy/ratelimit service.

`bin/ratelimit` is envoyproxy/ratelimit built from its Go module (tests/envoyratelimit,
`make test-envoy-ratelimit`), with a real Redis behind it (its only counter backend
besides memcached; `redis-server` from Debian's package). The service loads the
`config.yaml` key of the ConfigMap appinfra renders for a sample policy, and its HTTP
`/json` endpoint (the same ShouldRateLimit call Envoy makes over gRPC) answers for the
descriptor entries the render docstring tells Envoy routes to send: OK for `requests`
hits, OVER_LIMIT after, per counter (client address, header value), never for an
allowlisted address, and not at all for requests a limit's `when` does not match.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from appinfra.api.ratelimitpolicy import RateLimitPolicySpec
from appinfra.render.common import Owner
from appinfra.render.ratelimitpolicy import ENVOY_KEY, render_ratelimitpolicy
from tests.support.servers import BIN, ServerProcess, free_port, http_ok

RATELIMIT = BIN / "ratelimit"
DEBUG: dict[str, str] = {}  # service address -> its debug listener
REDIS = shutil.which("redis-server")

# `make test` runs these only where the tools exist (skipped, with this reason, elsewhere);
# `make test-envoy-ratelimit` builds and installs them and requires the tests to run.
pytestmark = pytest.mark.skipif(
    (not RATELIMIT.exists() or REDIS is None)
    and os.environ.get("APPINFRA_REQUIRE_ENVOY_RATELIMIT") != "1",
    reason="needs bin/ratelimit and redis-server: run `make test-envoy-ratelimit`",
)

OWNER = Owner("RateLimitPolicy", "payments", "shop", "uid-1")
DOMAIN = "shop.payments"
ALLOWED = "10.0.0.7"
POLICY = {
    "targetRef": {"group": "apps", "kind": "Deployment", "name": "payments"},
    "enforcement": "EnvoyRateLimit",
    "limits": {
        "default": {"requests": 3, "unit": "Hour", "by": {"clientIP": {}}},
        "writes": {
            "requests": 2,
            "unit": "Hour",
            "when": {"pathPrefix": "/orders", "methods": ["PUT", "POST"]},
        },
        "keys": {"requests": 4, "unit": "Day", "by": {"header": "X-Api-Key"}},
    },
    "allowlist": [ALLOWED],
}


def config_map_text() -> str:
    """config.yaml exactly as the operator writes it into the ConfigMap."""
    spec = RateLimitPolicySpec.model_validate(POLICY)
    (config_map,) = render_ratelimitpolicy(OWNER, spec, None).children
    text: str = config_map["data"][ENVOY_KEY]
    return text


@pytest.fixture(scope="module")
def ratelimit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service's HTTP address, with the ConfigMap's config.yaml loaded.

    Its debug listener's address is written to `<address>/debug` in DEBUG below."""
    work = tmp_path_factory.mktemp("envoy-ratelimit")
    # envoy ratelimit reads <RUNTIME_ROOT>/<RUNTIME_SUBDIRECTORY>/config/*.yaml.
    config_dir = work / "runtime" / "config"
    config_dir.mkdir(parents=True)
    (config_dir / "config.yaml").write_text(config_map_text())

    assert REDIS is not None
    redis_port = free_port()
    redis = ServerProcess(
        "redis",
        [REDIS, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(work)],
        work,
    )  # fmt: skip
    port, grpc_port, debug_port = free_port(), free_port(), free_port()
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(grpc_port),
        "DEBUG_HOST": "127.0.0.1",
        "DEBUG_PORT": str(debug_port),
        "USE_STATSD": "false",
        "LOG_LEVEL": "warn",  # the log tail a failure prints then shows why it refused
        "RUNTIME_ROOT": str(work / "runtime"),
        "RUNTIME_SUBDIRECTORY": "",
        "RUNTIME_APPDIRECTORY": "config",
        "RUNTIME_WATCH_ROOT": "false",
        "BACKEND_TYPE": "redis",
        "REDIS_SOCKET_TYPE": "tcp",
        "REDIS_URL": f"127.0.0.1:{redis_port}",
        # /healthcheck answers 200 only once a config file has loaded without error:
        # that is the service accepting the file.
        "HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED": "true",
    }
    service = ServerProcess("ratelimit", [str(RATELIMIT)], work, env)
    base = f"http://127.0.0.1:{port}"
    DEBUG[base] = f"http://127.0.0.1:{debug_port}"
    try:
        redis.start().wait_ready(lambda: redis_ping(redis_port), timeout=30)
        service.start().wait_ready(lambda: http_ok(f"{base}/healthcheck"), timeout=60)
        yield base
    finally:
        if service.proc is not None:
            print(service.log_tail())  # shown with a failing test: why it refused the file
        service.stop()
        redis.stop()


def redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


def should_rate_limit(base: str, entries: list[tuple[str, str]], domain: str = DOMAIN) -> Any:
    body = {
        "domain": domain,
        "descriptors": [{"entries": [{"key": k, "value": v} for k, v in entries]}],
    }
    request = urllib.request.Request(f"{base}/json", data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as err:  # OVER_LIMIT comes back as 429 with the same body
        if err.code != 429:
            raise
        return json.load(err)


def codes(base: str, entries: list[tuple[str, str]], hits: int) -> list[str]:
    return [should_rate_limit(base, entries)["overallCode"] for _ in range(hits)]


@pytest.fixture(autouse=True)
def away_from_a_window_edge() -> None:
    """Counters are fixed windows (hour, day): start a test well inside one."""
    now = datetime.datetime.now(datetime.UTC)
    into_hour = now.minute * 60 + now.second
    if into_hour > 3600 - 20:
        time.sleep(3600 - into_hour + 1)


def test_the_service_loads_the_configmap_as_written(ratelimit: str) -> None:
    """Healthy only after the file loaded; every descriptor path of the policy is a rule."""
    with urllib.request.urlopen(f"{DEBUG[ratelimit]}/rlconfig", timeout=10) as resp:
        loaded = {
            line.split(":", 1)[0]: line.split(":", 1)[1].split(",")[0].strip()
            for line in resp.read().decode().splitlines()
            if line.startswith(DOMAIN + ".")
        }
    assert loaded == {
        f"{DOMAIN}.limit_default.remote_address": "unit=HOUR requests_per_unit=3",
        f"{DOMAIN}.limit_default.remote_address_{ALLOWED}": "unit=UNKNOWN requests_per_unit=0",
        f"{DOMAIN}.limit_keys.header_x-api-key": "unit=DAY requests_per_unit=4",
        f"{DOMAIN}.limit_writes.path_prefix_/orders.method_POST,PUT": (
            "unit=HOUR requests_per_unit=2"
        ),
    }
    assert yaml.safe_load(config_map_text())["domain"] == DOMAIN


def test_per_client_limit_is_over_after_requests_hits(ratelimit: str) -> None:
    client = [("limit", "default"), ("remote_address", "203.0.113.5")]
    assert codes(ratelimit, client, 4) == ["OK", "OK", "OK", "OVER_LIMIT"]
    # Counted per client address: another client still has its own three.
    other = [("limit", "default"), ("remote_address", "203.0.113.6")]
    assert codes(ratelimit, other, 1) == ["OK"]


def test_allowlisted_address_is_never_limited(ratelimit: str) -> None:
    allowed = [("limit", "default"), ("remote_address", ALLOWED)]
    assert codes(ratelimit, allowed, 6) == ["OK"] * 6


def test_when_limit_counts_matching_requests_together(ratelimit: str) -> None:
    """path_prefix and method arrive as the fixed values Envoy's header_value_match sends."""
    writes = [("limit", "writes"), ("path_prefix", "/orders"), ("method", "POST,PUT")]
    assert codes(ratelimit, writes, 3) == ["OK", "OK", "OVER_LIMIT"]
    unmatched = [("limit", "writes"), ("path_prefix", "/orders"), ("method", "GET")]
    answer = should_rate_limit(ratelimit, unmatched)
    assert answer["overallCode"] == "OK"
    assert "currentLimit" not in answer["statuses"][0]  # no rule: not counted at all


def test_header_limit_counts_per_header_value(ratelimit: str) -> None:
    key = [("limit", "keys"), ("header_x-api-key", "k-123")]
    assert codes(ratelimit, key, 5) == ["OK"] * 4 + ["OVER_LIMIT"]
    assert codes(ratelimit, [("limit", "keys"), ("header_x-api-key", "k-456")], 1) == ["OK"]


def test_the_domain_is_the_policys(ratelimit: str) -> None:
    client = [("limit", "default"), ("remote_address", "198.51.100.9")]
    answers = [should_rate_limit(ratelimit, client, domain="shop.other") for _ in range(5)]
    assert {a["overallCode"] for a in answers} == {"OK"}
    assert all("currentLimit" not in a["statuses"][0] for a in answers)
