"""The chart's RBAC is not only sufficient (the session operator runs with exactly it)
but necessary: with any one of these rules removed, something users see breaks.

Runs on a private control plane so that no other operator can mask a failure. These
three removals run in `make test`; `make rbac-ablation` (tests/support/rbac_ablation.py)
removes every permission of the chart in turn, outside `make test`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import STARTED, ControlPlane, OpenBao, Operator
from tests.support.kube import Cluster
from tests.support.objects import apply, condition, deployment, get, wait_condition
from tests.support.rbac import chart_rules, service_account_kubeconfig, without
from tests.support.servers import REPO, wait_until


@pytest.fixture(scope="module")
def private(workdir: Path) -> Iterator[Cluster]:
    plane = ControlPlane(workdir / "rbac")
    plane.start()
    cluster = Cluster(plane.kubeconfig)
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds")
    )
    try:
        yield cluster
    finally:
        plane.stop()
        if plane.process in STARTED:
            STARTED.remove(plane.process)


def _operator(
    cluster: Cluster, workdir: Path, openbao: OpenBao, rules: list[dict[str, Any]]
) -> Operator:
    name = f"appinfra-{uuid.uuid4().hex[:6]}"
    home = workdir / "rbac" / name
    home.mkdir(parents=True)
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "bao-token", "namespace": "appinfra-system"},
              "stringData": {"token": openbao.root_token}}  # fmt: skip
    kubeconfig = service_account_kubeconfig(cluster, "appinfra-system", name, rules,
                                            home / "kubeconfig")  # fmt: skip
    apply(cluster, secret)
    store = {"vault": {"address": openbao.address, "kv": {"mount": "secret", "version": 2},
                       "auth": {"token": {"secretRef": {"namespace": "appinfra-system",
                                                        "name": "bao-token", "key": "token"}}}},
             "allowedNamespaces": ["*"], "keyPrefix": ""}  # fmt: skip
    (home / "operator-config.yaml").write_text(yaml.safe_dump({"secretStores": {"bao": store}}))
    op = Operator(cluster, home, name)
    op.process.env["KUBECONFIG"] = str(kubeconfig)
    return op.start()


def _namespace(cluster: Cluster) -> str:
    name = f"r-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    return name


def _rollout_profile(ns: str) -> dict[str, Any]:
    return {"apiVersion": "appinfra.dev/v1alpha1", "kind": "ServiceProfile",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"targetRef": {"kind": "Deployment", "name": "web"},
                     "config": {"data": {"A": "1"}},
                     "rollout": {"minReadySeconds": 3}}}  # fmt: skip


def _binding(ns: str) -> dict[str, Any]:
    return {"apiVersion": "appinfra.dev/v1alpha1", "kind": "SecretBinding",
            "metadata": {"name": "creds", "namespace": ns},
            "spec": {"store": "bao", "data": [{"secretKey": "V",
                     "remoteRef": {"key": f"rbac/{ns}", "property": "v"}}]}}  # fmt: skip


def _scenario(cluster: Cluster, openbao: OpenBao, ns: str) -> None:
    import hvac

    hvac.Client(
        url=openbao.address, token=openbao.root_token
    ).secrets.kv.v2.create_or_update_secret(
        path=f"rbac/{ns}", secret={"v": "1"}, mount_point="secret"
    )
    apply(cluster, deployment(ns, "web"), _rollout_profile(ns), _binding(ns))


REMOVED = {
    "patch deployments": ("apps", "deployments", "patch"),
    "get secrets": ("", "secrets", "get"),
    "patch serviceprofiles/status": ("appinfra.dev", "serviceprofiles/status", "patch"),
}


def test_with_every_chart_rule_the_scenario_works(
    private: Cluster, workdir: Path, openbao: OpenBao
) -> None:
    op = _operator(private, workdir, openbao, chart_rules())
    try:
        ns = _namespace(private)
        _scenario(private, openbao, ns)
        wait_condition(private, "serviceprofile", ns, "web", "Ready", "True")
        wait_condition(private, "secretbinding", ns, "creds", "Ready", "True")
    finally:
        op.stop()


@pytest.mark.parametrize("removed", list(REMOVED), ids=lambda r: r.replace(" ", "-"))
def test_removing_a_chart_rule_breaks_something_visible(
    private: Cluster, workdir: Path, openbao: OpenBao, removed: str
) -> None:
    op = _operator(private, workdir, openbao, without(chart_rules(), *REMOVED[removed]))
    try:
        ns = _namespace(private)
        _scenario(private, openbao, ns)
        if removed in ("patch deployments", "get secrets"):
            kind, name = (
                ("serviceprofile", "web")
                if "deployments" in removed
                else ("secretbinding", "creds")
            )
            wait_until(
                lambda: "forbidden" in condition(get(private, kind, ns, name), "Ready").get(
                    "message", "").lower(),
                60,
                f"{kind}/{name} Ready=False naming the refusal",
            )  # fmt: skip
            ready = condition(get(private, kind, ns, name), "Ready")
            assert ready["status"] == "False"
            # The handler's specific reason stands (not the runtime's catch-all APIError).
            assert ready["reason"] == ("ApplyFailed" if "deployments" in removed else "APIError")
        else:
            # Children appear (the operator works) but no status can ever be written.
            wait_until(lambda: get(private, "configmap", ns, "web-config") is not None, 30,
                       "the operator to act")  # fmt: skip
            wait_until(lambda: "reconcile failed" in op.process.log_path.read_text(), 30,
                       "a logged failure")  # fmt: skip
            assert "status" not in (get(private, "serviceprofile", ns, "web") or {})
    finally:
        op.stop()
