"""Hostile input to one operator: a mebibyte of config, template sandbox escapes,
a template that exhausts memory, deeply nested secret JSON. Each gets a clear
status, and the operator keeps serving everyone else."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import Operator
from tests.e2e.test_secretbinding import SB, binding, secret_data
from tests.e2e.test_serviceprofile import SP, profile
from tests.support.faults import (
    BAO_TOKEN,
    Bao,
    Obj,
    assert_alive,
    aws_store,
    create,
    full_spec,
    idle_deployment,
    namespaces,
    new_operator,
    secrets_manager,
    stop_operator,
    vault_store,
)
from tests.support.kube import Cluster
from tests.support.objects import apply, condition, get, wait_condition
from tests.support.servers import wait_until

# --- 5. hostile input -------------------------------------------------------------

HOSTILE = ("size", "sandbox", "memory", "deep")
HOSTILE_NS = [f"hostile-{h}" for h in HOSTILE] + [f"after-{h}" for h in HOSTILE]


@dataclass
class Hostile:
    cluster: Cluster
    op: Operator
    bao: Bao
    moto: str

    def still_serving(self, case: str) -> None:
        """The operator survived and still does its job: a normal profile and binding in
        another namespace become Ready."""
        assert_alive(self.op)
        ns = f"after-{case}"
        self.bao.put(f"{ns}/normal", {"v": "fine"})
        data = [{"secretKey": "V", "remoteRef": {"key": f"{ns}/normal", "property": "v"}}]
        apply(self.cluster, idle_deployment(ns, "normal"),
              profile(ns, "normal", "normal", **full_spec(7)),
              binding(ns, "normal", "bao", data=data))  # fmt: skip
        wait_condition(self.cluster, SP, ns, "normal", "Ready", "True", timeout=60)
        wait_condition(self.cluster, SB, ns, "normal", "Ready", "True", timeout=60)
        assert secret_data(self.cluster, ns, "normal") == {"V": "fine"}
        assert_alive(self.op)


@pytest.fixture(scope="module")
def hostile(kube: Cluster, bao: Bao, moto_endpoint: str, faults_dir: Path) -> Iterator[Hostile]:
    """One operator for every hostile-input test: what one test throws at it must not
    hurt it for the next."""
    namespaces(kube, *HOSTILE_NS)
    scope = ("hostile-*", "after-*")
    config = {"secretStores": {"bao": vault_store(bao, *scope),
                               "aws": aws_store(moto_endpoint, *scope)}}  # fmt: skip
    op = new_operator(kube, faults_dir, "operator-hostile", HOSTILE_NS, config,
                      APPINFRA_BACKOFF_BASE_SECONDS="1").start()  # fmt: skip
    try:
        yield Hostile(kube, op, bao, moto_endpoint)
    finally:
        stop_operator(op)


MIB = 1024 * 1024


def test_one_mebibyte_config_gets_a_clear_status(hostile: Hostile) -> None:
    ns, cluster = "hostile-size", hostile.cluster
    # The API server stores objects up to ~1.5 MiB, so both profiles are accepted; a
    # ConfigMap's values may total at most 1 MiB (1048576 bytes). Exactly 1 MiB fits,
    # one byte more does not: each side must end in a clear status.
    fits = {"data": {"BLOB": "x" * MIB}}
    over = {"data": {"BLOB": "x" * MIB, "ONE_MORE": "y"}}
    for name, config in (("fits", fits), ("over", over)):
        sp = profile(ns, name, name, config=config, disruption={"maxUnavailable": 1})
        create(cluster, idle_deployment(ns, name), sp)

    wait_condition(cluster, SP, ns, "fits", "Ready", "True", "Reconciled", timeout=60)
    cm = get(cluster, "configmap", ns, "fits-config")
    assert cm is not None and len(cm["data"]["BLOB"]) == MIB

    wait_until(
        lambda: condition(get(cluster, SP, ns, "over"), "Ready").get("status") == "False",
        60,
        "a Ready=False verdict on the profile over the limit",
    )
    sp = get(cluster, SP, ns, "over")
    assert sp is not None and sp["status"]["observedGeneration"] == sp["metadata"]["generation"]
    accepted, ready = condition(sp, "Accepted"), condition(sp, "Ready")
    if accepted["status"] == "False":  # refused up front
        assert accepted["reason"] == "Invalid" and "spec.config" in accepted["message"]
    else:  # tried, and the API server said no: the status says what and why
        assert ready["reason"] not in ("", "Reconciled"), ready
        assert "over-config" in ready["message"] and "1048576" in ready["message"], ready
    assert len(ready["message"]) < 2048  # it names the limit, it does not echo the data
    assert get(cluster, "configmap", ns, "over-config") is None
    hostile.still_serving("size")


SANDBOX_ESCAPES = {
    "mro.txt": "{{ ''.__class__.__mro__ }}",
    "subclasses.txt": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler.txt": "{{ cycler.__init__.__globals__ }}",
    "joiner.txt": "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "lipsum.txt": "{{ lipsum.__globals__['os'].environ }}",
    "namespace.txt": "{{ namespace.__init__.__globals__ }}",
    "attr.txt": "{{ ''|attr('__class__') }}",
    "format.txt": "{{ '{0.__class__.__init__.__globals__}'.format(cycler) }}",
    "self.txt": "{{ self._TemplateReference__context }}",
    "loop.txt": "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "config.txt": "{{ config.items() }}",
}


def test_template_sandbox_escapes_are_invalid_and_named(hostile: Hostile) -> None:
    ns, cluster = "hostile-sandbox", hostile.cluster
    objs: list[Obj] = []
    for i, (file, source) in enumerate(SANDBOX_ESCAPES.items()):
        config = {"files": {file: source}, "data": {"A": "1"}}
        objs += [idle_deployment(ns, f"esc{i}"), profile(ns, f"esc{i}", f"esc{i}", config=config)]
    apply(cluster, *objs)
    for i, file in enumerate(SANDBOX_ESCAPES):
        sp = wait_condition(cluster, SP, ns, f"esc{i}", "Accepted", "False", "Invalid")
        message = condition(sp, "Accepted")["message"]
        assert f"config.files.{file}" in message, (file, message)
        for leak in ("<class", "environ", "uid=", "__builtins__", "Popen"):
            assert leak not in message, (file, message)
        assert get(cluster, "configmap", ns, f"esc{i}-config") is None
        dep = get(cluster, "deployment", ns, f"esc{i}")
        assert "appinfra.dev/serviceprofile" not in (dep or {})["metadata"].get("annotations", {})
    hostile.still_serving("sandbox")


def test_template_that_exhausts_memory_is_invalid(hostile: Hostile) -> None:
    ns, cluster = "hostile-memory", hostile.cluster
    # 1 TiB cannot be allocated, so this fails at once instead of eating the machine.
    config = {"files": {"huge.txt": "{{ 'a' * 2**40 }}"}}
    apply(cluster, idle_deployment(ns, "huge"), profile(ns, "huge", "huge", config=config))
    try:
        sp = wait_condition(cluster, SP, ns, "huge", "Accepted", "False", "Invalid", timeout=20)
        assert "config.files.huge.txt" in condition(sp, "Accepted")["message"]
    finally:
        hostile.still_serving("memory")


DEPTH = 10_000


def nested_objects(depth: int) -> str:
    """JSON text of `depth` nested objects {"a": {"a": ...}}, built as text: Python's own
    json module can neither encode nor decode it (RecursionError), which is the point."""
    return '{"a":' * depth + '"bottom"' + "}" * depth


def nested_arrays(depth: int) -> str:
    return "[" * depth + '"bottom"' + "]" * depth


def write_raw(bao: Bao, path: str, secret_json: str) -> None:
    """A KV v2 write of JSON text hvac could not serialize."""
    request = urllib.request.Request(
        f"{bao.address}/v1/secret/data/{path}", data=f'{{"data": {secret_json}}}'.encode(),
        method="POST", headers={"X-Vault-Token": BAO_TOKEN, "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    "case",
    [
        # OpenBao refuses documents nested 10,000 deep (Go's limit, its request wrapper
        # included) and with more than ~1,000 strings, so: arrays, 9,990 deep.
        "vault-10000",
        # Secrets Manager holds a string: 10,000 nested objects (60 kB, under the 64 KiB cap).
        "aws-10000",
        # A control Python can parse: the operator's own depth limit (32) must refuse it.
        "vault-40",
    ],
)
def test_deeply_nested_secret_json_is_refused_with_a_clear_message(
    hostile: Hostile, case: str
) -> None:
    ns, cluster = "hostile-deep", hostile.cluster
    key = f"{ns}/{case}"
    if case == "vault-10000":
        store, prop = "bao", "deep.a"
        write_raw(hostile.bao, key, f'{{"deep": {{"a": {nested_arrays(DEPTH - 10)}}}}}')
    elif case == "aws-10000":
        store, prop = "aws", "a.a"
        sm = secrets_manager(hostile.moto)
        sm.create_secret(Name=key, SecretString=nested_objects(DEPTH))
    else:
        store, prop = "bao", "a.a"
        hostile.bao.put(key, json.loads(nested_objects(40)))
    data = [{"secretKey": "X", "remoteRef": {"key": key, "property": prop}}]
    apply(cluster, binding(ns, case, store, data=data))
    try:
        sb = wait_condition(cluster, SB, ns, case, "Synced", "False", timeout=20)
        message = condition(sb, "Synced")["message"]
        assert key in message and ("deep" in message or "nest" in message), message
        assert get(cluster, "secret", ns, case) is None
    finally:
        hostile.still_serving("deep")
