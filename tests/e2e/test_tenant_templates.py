"""Hostile user templates against a real `appinfra run`: the tenant's own resource ends
in a clear, value-free status; the shared operator stays alive, within the chart's
memory limit, and keeps serving everyone else."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import CANARY, Operator, Stores
from tests.e2e.test_serviceprofile import profile as service_profile
from tests.support.kube import Cluster
from tests.support.objects import apply, condition, deployment, events_for, get, wait_condition
from tests.support.rss import PeakSampler, tree_rss
from tests.support.servers import http_ok, wait_until

SP = "serviceprofile"
SB = "secretbinding"
MIB = 1024 * 1024
CHART_MEMORY_LIMIT = 256 * MIB  # charts/appinfra/values.yaml resources.limits.memory

# A few of tests/unit/test_hostile_templates.py's catalogue, one per way of failing,
# with what the status message must say about it.
HOSTILE = {
    "center.txt": ("{{ 'a'|center(300000000) }}", "would build more than"),
    "doubling.txt": (
        "{% set ns = namespace(s='a') %}{% for i in range(64) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "would build more than",
    ),
    "loops.txt": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "exceeded the CPU time budget",
    ),
    "macro.txt": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(100) }}",
        "exceeded the CPU time budget",
    ),
    "fill.txt": (
        "{% set d = {} %}{% for i in range(100000) %}"
        "{{ d.update({i: ('x' * 1000) ~ i}) or '' }}{% endfor %}",
        "exceeded the memory budget",
    ),
    "lipsum.txt": ("{{ lipsum(n=10**7) }}", "'lipsum' is undefined"),
    "recursion.txt": (
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "RecursionError",
    ),
    "deep.txt": ("{% if 1 %}" * 300 + "x" + "{% endif %}" * 300, "too deeply"),
}


def profile(namespace: str, name: str, files: dict[str, str]) -> dict[str, Any]:
    return service_profile(
        namespace, name, name, config={"files": files, "variables": {"APP": name}}
    )


class Watch(PeakSampler):
    """Samples the operator every 50 ms: peak RSS of its process tree, and whether it
    was ever not running or not answering /healthz."""

    def __init__(self, op: Operator):
        super().__init__(self._tree_rss, 0.05)
        self.op = op
        self.problems: list[str] = []

    def _tree_rss(self) -> int:
        if not self.op.process.running():
            if not self.problems:
                self.problems.append("the operator exited")
            return 0
        assert self.op.process.proc is not None
        return tree_rss(self.op.process.proc.pid)


@pytest.fixture
def watch(operator: Operator) -> Iterator[Watch]:
    with Watch(operator) as w:
        yield w
    assert not w.problems, w.problems
    assert operator.process.running(), operator.process.log_tail()
    assert http_ok(f"http://127.0.0.1:{operator.health_port}/healthz")
    assert w.peak < CHART_MEMORY_LIMIT, f"operator and workers reached {w.peak // MIB} MiB"


def test_hostile_config_templates_end_invalid_while_others_converge(
    cluster: Cluster, operator: Operator, namespace: str, watch: Watch
) -> None:
    objs: list[dict[str, Any]] = []
    names = {}
    for i, (file, (source, _)) in enumerate(HOSTILE.items()):
        names[file] = f"hostile{i}"
        objs += [
            deployment(namespace, f"hostile{i}"),
            profile(namespace, f"hostile{i}", {file: source}),
        ]
    apply(cluster, *objs)
    # An unrelated profile applied while the hostile ones are being rendered.
    calm = {"app.yaml": "name: {{ APP }}\n{% for i in range(3) %}- {{ i }}\n{% endfor %}"}
    apply(cluster, deployment(namespace, "calm"), profile(namespace, "calm", calm))
    wait_condition(cluster, SP, namespace, "calm", "Ready", "True", "Reconciled", timeout=60)
    cm = get(cluster, "configmap", namespace, "calm-config")
    assert cm is not None and cm["data"]["app.yaml"] == "name: calm\n- 0\n- 1\n- 2\n"

    for file, (_, says) in HOSTILE.items():
        name = names[file]
        sp = wait_condition(
            cluster, SP, namespace, name, "Accepted", "False", "Invalid", timeout=60
        )
        message = condition(sp, "Accepted")["message"]
        assert message.startswith(f"spec.config.files.{file}"), (file, message)
        assert says in message, (file, message)
        assert "Traceback" not in message and len(message) < 300, (file, message)
        assert get(cluster, "configmap", namespace, f"{name}-config") is None


VALUE_ECHOING = {
    "lookup": "{{ {}[DB_PASSWORD] }}",
    "filter-name": "{{ [1]|map(DB_PASSWORD)|list }}",
    "attr": "{{ DB_PASSWORD|attr(DB_PASSWORD) }}",
    "format-field": "{{ ('{0[' ~ DB_PASSWORD ~ ']}').format({}) }}",
}


def test_value_echoing_secret_templates_leak_nothing(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str, watch: Watch
) -> None:
    key = f"{namespace}/db"
    stores.bao.secrets.kv.v2.create_or_update_secret(
        path=key, secret={"password": CANARY}, mount_point="secret"
    )
    data = [{"secretKey": "DB_PASSWORD", "remoteRef": {"key": key, "property": "password"}}]
    for case, source in VALUE_ECHOING.items():
        binding = {
            "apiVersion": "appinfra.dev/v1alpha1",
            "kind": "SecretBinding",
            "metadata": {"name": f"echo-{case}", "namespace": namespace},
            "spec": {"store": "vault-main", "data": data,
                     "target": {"template": {"data": {"DSN": source}}}},
        }  # fmt: skip
        apply(cluster, binding)
    for case in VALUE_ECHOING:
        sb = wait_condition(
            cluster, SB, namespace, f"echo-{case}", "Synced", "False", "TemplateError", timeout=60
        )
        message = condition(sb, "Synced")["message"]
        assert "spec.target.template.data.DSN" in message, (case, message)
        assert get(cluster, "secret", namespace, f"echo-{case}") is None

    seen = [
        json.dumps(cluster.kubectl_json("-n", namespace, "get", "secretbindings")),
        json.dumps([events_for(cluster, namespace, f"echo-{case}") for case in VALUE_ECHOING]),
        operator.process.log_path.read_text(errors="replace"),
    ]
    for text in seen:
        assert CANARY not in text


SPINNERS = 10  # five times the workers one namespace may hold at once
SPIN = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture
def other_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    with cluster.api() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        yield name
        core.delete_namespace(name)


def _profiles(api: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    listed = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "appinfra.dev", "v1alpha1", namespace, "serviceprofiles"
    )
    return {item["metadata"]["name"]: item for item in listed["items"]}


def _has(obj: dict[str, Any] | None, type_: str, status: str, reason: str) -> bool:
    cond = condition(obj, type_)
    return bool(
        obj is not None
        and cond.get("status") == status
        and cond.get("reason") == reason
        and obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]
    )


def test_spinning_templates_in_one_namespace_do_not_delay_another(
    cluster: Cluster, operator: Operator, namespace: str, other_namespace: str, watch: Watch
) -> None:
    """One namespace applies many distinct templates that each spin until the CPU
    budget stops them: more than there are template workers. A profile applied in
    another namespace while they render converges while most of them are still
    rendering, rather than behind them (the workers take turns by namespace)."""
    objs: list[dict[str, Any]] = []
    for i in range(SPINNERS):
        objs += [
            deployment(namespace, f"spin{i}"),
            profile(namespace, f"spin{i}", {"loop.txt": f"{{# {i} #}}" + SPIN}),
        ]
    apply(cluster, *objs)

    with cluster.api() as api:

        def invalid() -> int:
            spinners = _profiles(api, namespace).values()
            return sum(_has(sp, "Accepted", "False", "Invalid") for sp in spinners)

        # The attack is under way: its first renders have used up their budget.
        wait_until(lambda: invalid() >= 1, 60, "a spinning template to end Invalid")
        calm = {"app.yaml": "name: {{ APP }}\n"}
        apply(cluster, deployment(other_namespace, "calm"), profile(other_namespace, "calm", calm))
        still_rendering: list[int] = []

        def calm_ready() -> bool:
            ready = _has(_profiles(api, other_namespace).get("calm"), "Ready", "True", "Reconciled")
            if ready:  # counted after: if anything, fewer are left than when calm converged
                still_rendering.append(SPINNERS - invalid())
            return ready

        wait_until(calm_ready, 60, "the other namespace's profile to converge", interval=0.05)
        assert still_rendering[0] >= SPINNERS // 2, (
            f"the other namespace's profile converged when only {still_rendering[0]} of "
            f"{SPINNERS} spinning templates were still rendering: it waited behind them"
        )
        wait_until(lambda: invalid() == SPINNERS, 120, "every spinning template Invalid")
        for sp in _profiles(api, namespace).values():
            message = condition(sp, "Accepted")["message"]
            assert "exceeded the CPU time budget" in message, message
    cm = get(cluster, "configmap", other_namespace, "calm-config")
    assert cm is not None and cm["data"]["app.yaml"] == "name: calm\n"
