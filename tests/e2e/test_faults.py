"""Faults: the operator crashes, the API server goes away, a secret store goes down or
throttles, users send hostile input. Every test asserts that nothing is lost.

These tests break servers, so they never touch the session's shared ones: they run on
their own control plane (module-scoped, restartable on the same data and port), their
own OpenBao dev server (on a fixed port, so a restart comes back at the same address),
their own moto behind a fault-injecting proxy, and their own `appinfra run` processes,
each scoped to its test's namespaces with `--namespace`.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import hvac
import pytest
import yaml

from tests.e2e.conftest import STARTED, ControlPlane, Operator
from tests.e2e.test_secretbinding import SB, backend_requests, binding, secret_data
from tests.e2e.test_serviceprofile import SP, profile
from tests.support.faultproxy import FaultProxy
from tests.support.kube import Cluster
from tests.support.objects import apply, condition, deployment, get, wait_condition
from tests.support.servers import REPO, ServerProcess, free_port, http_ok, tool, wait_until

SYSTEM = "faults-system"  # credentials the stores read, on our own control plane
MANAGED = "app.kubernetes.io/managed-by=appinfra"
BAO_TOKEN = secrets.token_hex(16)
AWS_KEYS = {"accessKeyIDKey": "id", "secretAccessKeyKey": "secret"}
CHILD_KINDS = ("ConfigMap", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget")

Obj = dict[str, Any]


# --- our own servers ---------------------------------------------------------------


def _forget(*processes: ServerProcess | None) -> None:
    """Drop our servers from the session's log-attachment list once they are gone, so
    other tests' failure reports do not carry them."""
    for proc in processes:
        if proc in STARTED:
            STARTED.remove(proc)


@pytest.fixture(scope="module")
def faults_dir(workdir: Path) -> Path:
    path = workdir / "faults"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def plane(faults_dir: Path) -> Iterator[ControlPlane]:
    """A second control plane only these tests use (and stop, and restart)."""
    own = ControlPlane(faults_dir)
    own.start()
    try:
        yield own
    finally:
        own.stop()
        _forget(own.process)


@pytest.fixture(scope="module")
def kube(plane: ControlPlane) -> Cluster:
    """Our control plane with the CRDs Established and the stores' credential Secrets."""
    cluster = Cluster(plane.kubeconfig)
    crds = str(REPO / "crds")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", crds)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
    namespaces(cluster, SYSTEM)
    credentials = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": SYSTEM},
         "stringData": data}
        for name, data in (("bao-token", {"token": BAO_TOKEN}),
                           ("aws-keys", {"id": "testing", "secret": "testing"}))
    ]  # fmt: skip
    apply(cluster, *credentials)
    return cluster


@dataclass
class Bao:
    """Our own OpenBao dev server on a fixed port: stoppable, and back at the same address."""

    address: str
    process: ServerProcess

    def start(self) -> None:
        self.process.start()
        if self.process not in STARTED:
            STARTED.append(self.process)
        self.process.wait_ready(lambda: http_ok(f"{self.address}/v1/sys/health"), 60)

    def stop(self) -> None:
        self.process.stop()

    def client(self) -> hvac.Client:
        return hvac.Client(url=self.address, token=BAO_TOKEN)

    def put(self, path: str, data: dict[str, Any]) -> None:
        self.client().secrets.kv.v2.create_or_update_secret(path=path, secret=data)


@pytest.fixture(scope="module")
def bao(faults_dir: Path) -> Iterator[Bao]:
    port = free_port()
    home = faults_dir / "openbao"
    home.mkdir(exist_ok=True)
    argv = [tool("bao"), "server", "-dev", f"-dev-root-token-id={BAO_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{port}"]  # fmt: skip
    address = f"http://127.0.0.1:{port}"
    env = {"HOME": str(home), "BAO_ADDR": address}
    server = Bao(address, ServerProcess("openbao-faults", argv, home, env=env))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        _forget(server.process)


@pytest.fixture(scope="module")
def moto_endpoint(faults_dir: Path) -> Iterator[str]:
    port = free_port()
    proc = ServerProcess(
        "moto-faults", [tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)], faults_dir
    ).start()
    STARTED.append(proc)
    endpoint = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: http_ok(f"{endpoint}/moto-api/data.json"), 60)
    try:
        yield endpoint
    finally:
        proc.stop()
        _forget(proc)


def secrets_manager(endpoint: str) -> Any:
    return boto3.client(
        "secretsmanager", endpoint_url=endpoint, region_name="eu-west-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


def new_operator(
    kube: Cluster, faults_dir: Path, name: str, watch: list[str], config: Obj, **env: str
) -> Operator:
    """`appinfra run` (not started yet) on our control plane, watching only `watch`, with
    its own configuration file and log under faults_dir/name."""
    home = faults_dir / name
    home.mkdir(exist_ok=True)
    (home / "operator-config.yaml").write_text(yaml.safe_dump(config))
    op = Operator(kube, home, name, *[arg for ns in watch for arg in ("--namespace", ns)])
    op.process.argv.remove("--all-namespaces")
    # The production default resync (600 s): no periodic resync within a test, so every
    # reconcile a test sees was caused by what it did, or is a retry.
    op.process.env.update({"APPINFRA_RESYNC_SECONDS": "600", **env})
    return op


def stop_operator(op: Operator) -> None:
    began = time.monotonic()
    op.stop()
    took = time.monotonic() - began
    if took > 10:  # ServerProcess.stop waits 30 s for SIGTERM, then SIGKILLs
        warnings.warn(f"{op.process.name} took {took:.0f}s to stop on SIGTERM", stacklevel=1)
    _forget(op.process)


Launch = Callable[..., Operator]


@pytest.fixture
def launch(kube: Cluster, faults_dir: Path) -> Iterator[Launch]:
    """Start operators for one test; every one started is stopped after it."""
    started: list[Operator] = []

    def start(name: str, watch: list[str], config: Obj | None = None, **env: str) -> Operator:
        op = new_operator(kube, faults_dir, name, watch, config or {}, **env)
        started.append(op)
        return op.start()

    yield start
    for op in started:
        stop_operator(op)


# --- helpers --------------------------------------------------------------------


def namespaces(cluster: Cluster, *names: str) -> None:
    apply(cluster, *({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
                     for n in names))  # fmt: skip


def create(cluster: Cluster, *objs: Obj) -> None:
    """`kubectl create`: no last-applied annotation (which would double a big object)."""
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objs)}
    cluster.kubectl("create", "-f", "-", input=json.dumps(doc))


def idle_deployment(namespace: str, name: str) -> Obj:
    """A Deployment scaled to zero: no Pods, no ReplicaSet churn, less load on two cores
    (and the HPA leaves it alone: scaling is disabled at zero replicas)."""
    dep = deployment(namespace, name)
    dep["spec"]["replicas"] = 0
    return dep


def full_spec(index: int) -> Obj:
    """Every ServiceProfile section that produces a child, with per-profile content."""
    return {
        "config": {
            "data": {"INDEX": "${INDEX}", "MODE": "${MODE:steady}"},
            "files": {"app.yaml": "index: {{ INDEX }}\n"},
            "variables": {"INDEX": str(index)},
        },
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "cpu": {"averageUtilization": 70}},
        "network": {
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}]}],
        },
        "disruption": {"maxUnavailable": 1},
    }


def is_ready(obj: Obj) -> bool:
    return bool(
        condition(obj, "Ready").get("status") == "True"
        and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
    )


def listed(cluster: Cluster, namespace: str, kinds: str, *args: str) -> list[Obj]:
    items: list[Obj] = cluster.kubectl_json("-n", namespace, "get", kinds, *args)["items"]
    return items


def versions(cluster: Cluster, namespace: str, kinds: str) -> dict[str, str]:
    return {
        f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in listed(cluster, namespace, kinds)
    }


def secret_state(cluster: Cluster, namespace: str, name: str) -> tuple[Obj, str]:
    """(data, resourceVersion) of a Secret: "byte for byte the same" compares both."""
    secret = get(cluster, "secret", namespace, name)
    assert secret is not None, f"Secret {namespace}/{name} is gone"
    return secret.get("data") or {}, secret["metadata"]["resourceVersion"]


def assert_alive(op: Operator) -> None:
    assert op.process.running(), f"the operator died:\n{op.process.log_tail()}"
    assert http_ok(f"http://127.0.0.1:{op.health_port}/healthz")


# --- 1. the operator is SIGKILLed mid-convergence -----------------------------------

CRASH_NS = "crash"
PROFILES = 200


def test_sigkill_during_convergence_loses_nothing_and_duplicates_nothing(
    kube: Cluster, launch: Launch
) -> None:
    namespaces(kube, CRASH_NS)
    names = [f"svc{i:03d}" for i in range(PROFILES)]
    objs: list[Obj] = []
    for i, name in enumerate(names):
        objs += [idle_deployment(CRASH_NS, name), profile(CRASH_NS, name, name, **full_spec(i))]
    apply(kube, *objs)  # one `kubectl apply` of a List of 400 objects
    # Started after the apply, so it has all 200 to do and the kill lands mid-way.
    first = launch("operator-crash-1", [CRASH_NS])

    def configmaps() -> int:
        return len(listed(kube, CRASH_NS, "configmaps", "-l", MANAGED))

    # Kill while the work is well under way: some profiles done, most not.
    wait_until(lambda: configmaps() >= 25, 120, "the first operator to make progress", 0.3)
    first.process.kill()
    assert first.process.proc is not None and first.process.proc.returncode == -9
    ready_at_kill = sum(map(is_ready, listed(kube, CRASH_NS, SP)))
    print(f"SIGKILL with {ready_at_kill} of {PROFILES} profiles Ready")
    assert ready_at_kill < PROFILES, "the kill came too late to test anything"

    second = launch("operator-crash-2", [CRASH_NS])
    seen: dict[str, int] = {}

    def all_ready() -> bool:
        seen["ready"] = sum(map(is_ready, listed(kube, CRASH_NS, SP)))
        return seen["ready"] == PROFILES

    try:
        wait_until(all_ready, 180, "every ServiceProfile to be Ready", 2)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {seen} of {PROFILES} Ready") from None

    profiles = {o["metadata"]["name"]: o for o in listed(kube, CRASH_NS, SP)}
    assert sorted(profiles) == names
    uids = {name: o["metadata"]["uid"] for name, o in profiles.items()}
    children = listed(kube, CRASH_NS, "configmaps,hpa,networkpolicies,pdb", "-l", MANAGED)
    by_kind: defaultdict[str, list[str]] = defaultdict(list)
    for child in children:
        meta = child["metadata"]
        by_kind[child["kind"]].append(meta["name"])
        owner = meta["labels"]["appinfra.dev/owner-name"]
        refs = [r for r in meta.get("ownerReferences", []) if r.get("controller")]
        assert meta["labels"]["appinfra.dev/owner-kind"] == "ServiceProfile"
        assert len(refs) == 1 and refs[0]["uid"] == uids.get(owner), (child["kind"], meta)
        expected = f"{owner}-config" if child["kind"] == "ConfigMap" else owner
        assert meta["name"] == expected
    for kind in CHILD_KINDS:
        assert len(by_kind[kind]) == PROFILES, (kind, len(by_kind[kind]))
        duplicated = [n for n, c in Counter(by_kind[kind]).items() if c > 1]
        assert not duplicated, (kind, duplicated)
    # Nothing unlabelled or stray next to them either.
    every_cm = {o["metadata"]["name"] for o in listed(kube, CRASH_NS, "configmaps")}
    assert every_cm == {f"{n}-config" for n in names} | {"kube-root-ca.crt"}

    for i, cm in enumerate(sorted(listed(kube, CRASH_NS, "configmaps", "-l", MANAGED),
                                  key=lambda o: o["metadata"]["name"])):  # fmt: skip
        assert cm["data"] == {"INDEX": str(i), "MODE": "steady", "app.yaml": f"index: {i}\n"}
    for dep in listed(kube, CRASH_NS, "deployments"):
        name = dep["metadata"]["name"]
        assert dep["metadata"]["annotations"]["appinfra.dev/serviceprofile"] == name
        pod = dep["spec"]["template"]
        assert "appinfra.dev/config-hash" in pod["metadata"]["annotations"]
        assert pod["spec"]["containers"][0]["envFrom"] == [
            {"configMapRef": {"name": f"{name}-config"}}
        ]
        assert dep["spec"]["replicas"] == 0
    assert_alive(second)


# --- 2. the control plane goes away and comes back --------------------------------

RESTART_NS = "restart"


def test_control_plane_restart_operator_reconnects_by_itself(
    plane: ControlPlane, kube: Cluster, launch: Launch
) -> None:
    namespaces(kube, RESTART_NS)
    op = launch("operator-restart", [RESTART_NS])
    for i, name in enumerate(("stable", "changed")):
        apply(kube, idle_deployment(RESTART_NS, name),
              profile(RESTART_NS, name, name, **full_spec(i)))  # fmt: skip
    for name in ("stable", "changed"):
        wait_condition(kube, SP, RESTART_NS, name, "Ready", "True", timeout=60)
    before = untouched_state(kube)
    assert len(before) == 6, before
    assert op.process.proc is not None
    pid = op.process.proc.pid

    plane.stop()  # SIGTERM to the supervisor: etcd data and certificates are kept
    assert not plane.kubeconfig.exists()
    time.sleep(15)
    assert_alive(op)
    plane.start()  # same data dir, same port: the operator's kubeconfig is still valid

    changed_spec = full_spec(1)
    changed_spec["config"]["data"]["MODE"] = "after-restart"
    changed_spec["disruption"] = {"minAvailable": 0}
    apply(kube, profile(RESTART_NS, "changed", "changed", **changed_spec))
    apply(kube, idle_deployment(RESTART_NS, "fresh"),
          profile(RESTART_NS, "fresh", "fresh", **full_spec(2)))  # fmt: skip
    wait_condition(kube, SP, RESTART_NS, "changed", "Ready", "True", timeout=120)
    wait_condition(kube, SP, RESTART_NS, "fresh", "Ready", "True", timeout=120)
    cm = get(kube, "configmap", RESTART_NS, "changed-config")
    assert cm is not None and cm["data"]["MODE"] == "after-restart"
    pdb = get(kube, "pdb", RESTART_NS, "changed")
    assert pdb is not None and pdb["spec"] == {
        "minAvailable": 0, "selector": {"matchLabels": {"app": "changed"}}
    }  # fmt: skip
    fresh = versions(kube, RESTART_NS, "configmaps,hpa,networkpolicies,pdb")
    assert {"ConfigMap/fresh-config", "HorizontalPodAutoscaler/fresh", "NetworkPolicy/fresh",
            "PodDisruptionBudget/fresh"} <= set(fresh)  # fmt: skip

    assert untouched_state(kube) == before  # nothing of the untouched profile was rewritten
    assert_alive(op)
    assert op.process.proc.pid == pid  # the same process throughout: it reconnected


def untouched_state(cluster: Cluster) -> dict[str, Any]:
    """What the operator could have written on profile "stable" and its children: the
    resourceVersion where only the operator writes (the profile and its status, ConfigMap,
    NetworkPolicy); for the Deployment, HPA and PDB, which kube-controller-manager keeps
    writing too (status, the revision annotation; busy, it may first get to them only
    after the restart): the generation, the spec, our annotations and the operator's own
    managedFields entries (an apply that changed anything would show in their time)."""
    state: dict[str, Any] = {}
    kinds = "serviceprofiles,configmaps,hpa,networkpolicies,pdb,deployments"
    for obj in listed(cluster, RESTART_NS, kinds, "--show-managed-fields"):
        meta = obj["metadata"]
        if meta["name"] not in ("stable", "stable-config"):
            continue
        key = f"{obj['kind']}/{meta['name']}"
        if obj["kind"] in ("ServiceProfile", "ConfigMap", "NetworkPolicy"):
            state[key] = meta["resourceVersion"]
            continue
        ours = [m for m in meta["managedFields"] if m["manager"].startswith("appinfra")]
        annotations = meta.get("annotations") or {}
        state[key] = {
            "generation": meta["generation"],
            "spec": obj["spec"],
            "annotations": {k: v for k, v in annotations.items() if "appinfra" in k},
            "managedFields": ours,
        }
    return state


# --- 3. OpenBao is down for a minute -----------------------------------------------

BAO_NS = "bao-outage"
OUTAGE = 60.0


def vault_store(bao: Bao, *allowed: str) -> Obj:
    auth = {"token": {"secretRef": {"namespace": SYSTEM, "name": "bao-token", "key": "token"}}}
    return {
        "vault": {"address": bao.address, "kv": {"mount": "secret", "version": 2}, "auth": auth},
        "allowedNamespaces": list(allowed),
        "keyPrefix": "{namespace}/",
    }


def test_openbao_outage_keeps_the_secret_backs_off_and_recovers(
    kube: Cluster, bao: Bao, launch: Launch
) -> None:
    namespaces(kube, BAO_NS)
    config = {"secretStores": {"bao": vault_store(bao, BAO_NS)}}
    op = launch("operator-bao", [BAO_NS], config,
                APPINFRA_BACKOFF_BASE_SECONDS="1", APPINFRA_BACKOFF_CAP_SECONDS="300")  # fmt: skip
    key = f"{BAO_NS}/db"
    bao.put(key, {"password": "before-outage"})
    data = [{"secretKey": "PW", "remoteRef": {"key": key, "property": "password"}}]
    apply(kube, binding(BAO_NS, "db", "bao", data=data, refreshInterval="10s"))
    sb = wait_condition(kube, SB, BAO_NS, "db", "Ready", "True", timeout=60)
    # It refreshes: a later sync happened before the outage starts.
    wait_until(
        lambda: (
            get(kube, SB, BAO_NS, "db")["status"]["lastSyncTime"]  # type: ignore[index]
            != sb["status"]["lastSyncTime"]
        ),
        30,
        "a refresh",
    )
    before = secret_state(kube, BAO_NS, "db")
    requests_before = backend_requests(op, "bao")

    bao.stop()
    down_at = time.monotonic()
    try:
        sb = wait_condition(kube, SB, BAO_NS, "db", "Synced", "False", "BackendUnavailable", 40)
        assert "'bao'" in condition(sb, "Synced")["message"]
        assert condition(sb, "Ready")["status"] == "False"
        while time.monotonic() - down_at < OUTAGE:
            assert secret_state(kube, BAO_NS, "db") == before
            now = get(kube, SB, BAO_NS, "db")
            assert condition(now, "Synced").get("reason") == "BackendUnavailable", now
            time.sleep(2)
        sent = backend_requests(op, "bao") - requests_before
    finally:
        bao.start()  # same port, same root token; dev mode starts empty
    # Backoff from 1 s, doubling, full jitter in [d/2, d]: retries land at the earliest
    # 0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 63.5 s after the first failure, so 60 s hold at
    # most 7 attempts; +1 for one immediate extra try on a watch event (such as the
    # binding's own Synced=False status change), +1 for a refresh in flight when OpenBao
    # stopped. One refresh every 2 s without backoff is ~30 (with the cap at 1 s: 81
    # measured); at least 4 shows it keeps trying.
    print(f"{sent:g} OpenBao requests in {OUTAGE:g}s of outage")
    assert 4 <= sent <= 9, sent
    assert_alive(op)

    bao.put(key, {"password": "before-outage"})  # dev mode is in-memory: write it again
    back_at = time.monotonic()
    wait_condition(kube, SB, BAO_NS, "db", "Synced", "True", "Synced", timeout=150)
    print(f"Synced again {time.monotonic() - back_at:.0f}s after OpenBao returned")
    assert secret_state(kube, BAO_NS, "db") == before  # same value: not even rewritten
    bao.put(key, {"password": "after-outage"})
    wait_until(
        lambda: secret_data(kube, BAO_NS, "db") == {"PW": "after-outage"}, 30, "the new value"
    )
    assert_alive(op)


# --- 4. AWS throttles (and fails with 503) -----------------------------------------

AWS_NS = "aws-faults"
THROTTLED = 30.0


def aws_store(endpoint: str, *allowed: str) -> Obj:
    auth = {"secretRef": {"namespace": SYSTEM, "name": "aws-keys", **AWS_KEYS}}
    aws = {"service": "SecretsManager", "region": "eu-west-1", "endpoint": endpoint, "auth": auth}
    return {"aws": aws, "allowedNamespaces": list(allowed), "keyPrefix": "{namespace}/"}


def failed_attempts(op: Operator, store: str) -> float:
    """Backend calls the operator counted as failed for `store` (one per attempt)."""
    total = 0.0
    for line in op.metrics().splitlines():
        if (
            line.startswith("appinfra_backend_requests_total{")
            and f'store="{store}"' in line
            and 'status="ok"' not in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def settle(proxy: FaultProxy, quiet: float = 3.0) -> None:
    """Wait for a pause in the requests: botocore's retries inside one call are at most
    ~2 s apart, so after `quiet` seconds every attempt begun has ended (and been counted
    by the operator), while the next one is a backoff away."""
    wait_until(
        lambda: not proxy.log or time.monotonic() - proxy.log[-1][0] >= quiet,
        40,
        "a pause between attempts",
        0.1,
    )


def test_aws_throttling_and_503_keep_the_secret_cap_requests_and_recover(
    kube: Cluster, moto_endpoint: str, launch: Launch
) -> None:
    namespaces(kube, AWS_NS)
    throttle = FaultProxy(moto_endpoint).start()
    unavailable = FaultProxy(moto_endpoint).start()
    try:
        config = {"secretStores": {"aws-throttle": aws_store(throttle.endpoint, AWS_NS),
                                   "aws-503": aws_store(unavailable.endpoint, AWS_NS)}}  # fmt: skip
        op = launch("operator-aws", [AWS_NS], config, APPINFRA_BACKOFF_BASE_SECONDS="1")
        sm = secrets_manager(moto_endpoint)
        key = f"{AWS_NS}/api"
        sm.create_secret(Name=key, SecretString=json.dumps({"token": "v1"}))
        data = [{"secretKey": "TOKEN", "remoteRef": {"key": key, "property": "token"}}]
        proxies = {"aws-throttle": throttle, "aws-503": unavailable}
        for store in proxies:
            apply(kube, binding(AWS_NS, store, store, data=data, refreshInterval="10s"))
        for store in proxies:
            wait_condition(kube, SB, AWS_NS, store, "Ready", "True", timeout=60)
        assert throttle.count("forward") >= 1 and unavailable.count("forward") >= 1
        before = {store: secret_state(kube, AWS_NS, store) for store in proxies}

        attempts_before = {store: failed_attempts(op, store) for store in proxies}
        throttle.mode, unavailable.mode = "throttle", "unavailable"
        started = time.monotonic()
        codes = {"aws-throttle": "ThrottlingException", "aws-503": "503"}
        for store, code in codes.items():
            sb = wait_condition(kube, SB, AWS_NS, store, "Synced", "False", "BackendUnavailable",
                                timeout=40)  # fmt: skip
            assert code in condition(sb, "Synced")["message"], condition(sb, "Synced")
        while time.monotonic() - started < THROTTLED:
            for store in proxies:
                assert secret_state(kube, AWS_NS, store) == before[store]
                now = get(kube, SB, AWS_NS, store)
                assert condition(now, "Synced").get("reason") == "BackendUnavailable", now
            time.sleep(2)
        for proxy in proxies.values():
            settle(proxy)  # still failing, but no attempt half-way through
        throttle.mode = unavailable.mode = "forward"
        for store, proxy in proxies.items():
            # The operator's attempts (its own count) and the HTTP requests they made
            # (counted at the proxy, so botocore's internal retries are included).
            attempts = failed_attempts(op, store) - attempts_before[store]
            answered = [round(t - started, 1) for t, mode in proxy.log if mode != "forward"]
            print(f"{store}: {attempts:g} attempts, {len(answered)} requests at {answered}")
            # Backoff from 1 s (see the OpenBao test): at most 6 attempts fit in 30 s, +1
            # for an immediate extra try on a watch event, +1 in flight. A refresh every
            # 2 s without backoff would be 15.
            assert 3 <= attempts <= 8, (store, attempts, answered)
            # botocore's standard mode retries a throttled or 503 call inside one attempt;
            # the operator configures retries={"max_attempts": 2}, at most 3 requests.
            assert len(answered) <= 2 * attempts, (store, attempts, answered)  # one retry

        for store in proxies:
            wait_condition(kube, SB, AWS_NS, store, "Synced", "True", "Synced", timeout=120)
            assert secret_state(kube, AWS_NS, store) == before[store]
        sm.put_secret_value(SecretId=key, SecretString=json.dumps({"token": "v2"}))
        for store in proxies:
            wait_until(lambda s=store: secret_data(kube, AWS_NS, s) == {"TOKEN": "v2"},  # type: ignore[misc]
                       30, f"the new value through {store}")  # fmt: skip
        assert_alive(op)
    finally:
        throttle.stop()
        unavailable.stop()


def test_aws_a_throttled_call_is_retried_once_inside_an_attempt(
    kube: Cluster, moto_endpoint: str, launch: Launch
) -> None:
    ns = "aws-retry"
    namespaces(kube, ns)
    proxy = FaultProxy(moto_endpoint).start()
    try:
        config = {"secretStores": {"aws-retry": aws_store(proxy.endpoint, ns)}}
        op = launch("operator-aws-retry", [ns], config, APPINFRA_BACKOFF_BASE_SECONDS="1")
        proxy.mode = "throttle"
        data = [{"secretKey": "T", "remoteRef": {"key": f"{ns}/any", "property": "t"}}]
        apply(kube, binding(ns, "retry", "aws-retry", data=data))
        wait_condition(kube, SB, ns, "retry", "Synced", "False", "BackendUnavailable", 30)
        settle(proxy)
        attempts, sent = failed_attempts(op, "aws-retry"), proxy.count("throttle")
        assert attempts >= 1
        assert sent <= 2 * attempts, f"{sent:g} requests for {attempts:g} attempts"
    finally:
        proxy.stop()


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
