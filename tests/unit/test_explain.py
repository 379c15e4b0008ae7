"""`appinfra explain`'s pure part: fieldsV1 -> readable paths, grouping by field
manager and resource, and the text and JSON views of a fixed model."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from appinfra.explain_cli import parse_target, run_explain
from appinfra.explain_model import (
    Attached,
    Child,
    ConditionState,
    Explanation,
    OwnedFields,
    SecretSync,
    condition_state,
    decode_fields,
    owned_fields,
    render_json,
    render_text,
)

# What the API server records for appinfra-healthpolicy and -serviceprofile applies.
PROBE_FIELDS: dict[str, Any] = {
    "f:spec": {"f:template": {"f:spec": {"f:containers": {
        'k:{"name":"app"}': {
            ".": {},
            "f:name": {},
            "f:readinessProbe": {"f:httpGet": {"f:path": {}, "f:port": {}}},
        },
    }}}},
}  # fmt: skip
ROLLOUT_FIELDS: dict[str, Any] = {
    "f:metadata": {"f:annotations": {"f:appinfra.dev/serviceprofile": {}}},
    "f:spec": {
        "f:strategy": {"f:rollingUpdate": {"f:maxSurge": {}}, "f:type": {}},
        "f:template": {"f:spec": {"f:containers": {'k:{"name":"app"}': {
            ".": {}, "f:name": {}, "f:envFrom": {}}}}},
    },
}  # fmt: skip


def test_decode_probe_fields_keyed_list_item() -> None:
    assert decode_fields(PROBE_FIELDS) == [
        "spec.template.spec.containers[name=app].readinessProbe.httpGet.path",
        "spec.template.spec.containers[name=app].readinessProbe.httpGet.port",
    ]


def test_decode_annotations_strategy_and_atomic_list() -> None:
    assert decode_fields(ROLLOUT_FIELDS) == [
        'metadata.annotations["appinfra.dev/serviceprofile"]',
        "spec.strategy.rollingUpdate.maxSurge",
        "spec.strategy.type",
        "spec.template.spec.containers[name=app].envFrom",
    ]


def test_decode_composite_keys_set_members_indexes_and_bare_items() -> None:
    fields = {
        "f:ports": {'k:{"containerPort":8080,"protocol":"TCP"}': {
            ".": {}, "f:containerPort": {}, "f:protocol": {}, "f:name": {}}},
        "f:finalizers": {'v:"appinfra.dev/release"': {}},
        "f:args": {"i:2": {}},
        "f:volumes": {'k:{"name":"cfg"}': {".": {}, "f:name": {}}},
    }  # fmt: skip
    assert decode_fields(fields) == [
        "ports[containerPort=8080,protocol=TCP].name",
        'finalizers["appinfra.dev/release"]',
        "args[2]",
        "volumes[name=cfg]",  # owned with nothing but its key: the item itself
    ]


def _deployment(entries: list[dict[str, Any]], annotations: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "web", "annotations": annotations, "managedFields": entries}}


def test_grouping_by_manager_with_the_owning_resource() -> None:
    dep = _deployment(
        [
            {"manager": "kubectl-client-side-apply", "operation": "Update",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "appinfra-healthpolicy", "operation": "Apply", "fieldsV1": PROBE_FIELDS},
            {"manager": "appinfra-serviceprofile", "operation": "Apply",
             "fieldsV1": ROLLOUT_FIELDS},
            {"manager": "appinfra-serviceprofile", "operation": "Apply", "subresource": "status",
             "fieldsV1": {"f:status": {"f:x": {}}}},
        ],
        {"appinfra.dev/serviceprofile": "sp", "appinfra.dev/healthpolicy": "hp"},
    )  # fmt: skip
    groups = owned_fields(dep)
    assert [(g.kind, g.manager, g.resource) for g in groups] == [
        ("ServiceProfile", "appinfra-serviceprofile", "sp"),
        ("HealthPolicy", "appinfra-healthpolicy", "hp"),
    ]
    assert groups[0].paths == decode_fields(ROLLOUT_FIELDS)  # not status, not kubectl's
    assert groups[1].paths == decode_fields(PROBE_FIELDS)


def test_grouping_without_the_annotation_leaves_the_resource_unknown() -> None:
    dep = _deployment(
        [{"manager": "appinfra-healthpolicy", "operation": "Apply", "fieldsV1": PROBE_FIELDS}], {}
    )
    (group,) = owned_fields(dep)
    assert group.resource is None
    assert "HealthPolicy (unknown)" in render_text(Explanation("ns", "web", [group], []))


def test_condition_state_missing_condition_is_unknown() -> None:
    body = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Synced"}]}}
    assert condition_state(body, "Ready") == ConditionState("True", "Synced", "")
    assert condition_state(body, "Accepted").status == "Unknown"


OK = ConditionState("True", "Reconciled", "fine")
LOST = ConditionState("False", "Conflicted", "ServiceProfile a already targets Deployment web")
MODEL = Explanation(
    "shop",
    "web",
    [OwnedFields("ServiceProfile", "appinfra-serviceprofile", "a",
                 ["spec.strategy.rollingUpdate.maxSurge"])],
    [
        Attached("ServiceProfile", "a", OK, ConditionState("True", "Accepted", "ok"), False,
                 [Child("ConfigMap", "a-config", "exists, owned by ServiceProfile/a")]),
        Attached("ServiceProfile", "b", LOST, LOST, True),
        Attached("SecretBinding", "db", OK, OK, False,
                 [Child("Secret", "db", "exists, owned by SecretBinding/db")],
                 SecretSync("db", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z")),
    ],
)  # fmt: skip


def test_render_text_from_a_fixed_model() -> None:
    assert render_text(MODEL) == (
        "Deployment shop/web\n"
        "\n"
        "Fields appinfra owns:\n"
        "  ServiceProfile/a  [field manager appinfra-serviceprofile]\n"
        "    spec.strategy.rollingUpdate.maxSurge\n"
        "\n"
        "Resources attached:\n"
        "  ServiceProfile/a  Ready=True Reconciled   Accepted=True Accepted\n"
        "      ConfigMap/a-config  exists, owned by ServiceProfile/a\n"
        "  ServiceProfile/b  Ready=False Conflicted  Accepted=False Conflicted"
        "  CONFLICTED (loser: it does not act)\n"
        "      Ready: ServiceProfile a already targets Deployment web\n"
        "  SecretBinding/db  Ready=True Reconciled   Accepted=True Reconciled\n"
        "      secret db  last sync 2026-01-01T00:00:00Z  next sync 2026-01-01T01:00:00Z\n"
        "      Secret/db  exists, owned by SecretBinding/db\n"
    )


def test_render_json_from_a_fixed_model() -> None:
    doc = json.loads(render_json(MODEL))
    assert doc["namespace"] == "shop" and doc["deployment"] == "web"
    paths = ["spec.strategy.rollingUpdate.maxSurge"]
    assert doc["owned"] == [
        {"kind": "ServiceProfile", "manager": "appinfra-serviceprofile", "resource": "a",
         "paths": paths}
    ]  # fmt: skip
    a, b, db = doc["resources"]
    assert "secret" not in a  # only SecretBindings carry one
    assert a["children"] == [
        {"kind": "ConfigMap", "name": "a-config", "state": "exists, owned by ServiceProfile/a"}
    ]
    assert b["conflicted"] is True
    assert b["accepted"] == {"status": "False", "reason": "Conflicted", "message": LOST.message}
    assert db["secret"] == {"targetSecret": "db", "lastSyncTime": "2026-01-01T00:00:00Z",
                            "nextSyncTime": "2026-01-01T01:00:00Z"}  # fmt: skip


def test_empty_explanation_says_none() -> None:
    text = render_text(Explanation("ns", "web", [], []))
    assert text.count("  (none)") == 2


@pytest.mark.parametrize("arg", ["deployment/web", "deploy/web", "deployments.apps/web", "web"])
def test_parse_target_accepts_kubectl_spellings(arg: str) -> None:
    assert parse_target(arg) == "web"


@pytest.mark.parametrize("arg", ["service/web", "deployment/"])
def test_bad_target_is_one_line_exit_1(arg: str) -> None:
    err = io.StringIO()
    assert run_explain(arg, "ns", "text", io.StringIO(), err) == 1
    assert len(err.getvalue().strip().splitlines()) == 1
    assert "deployment/NAME" in err.getvalue()


class FakeKube:
    """Answers explain's reads from fixed objects; LISTs of `forbidden` plurals are 403."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]], forbidden: set[str]):
        self.objects = objects
        self.forbidden = forbidden
        self.methods: list[str] = []

    def request(self, method: str, path: str, **kw: Any) -> Any:
        from appinfra.kube.client import KubeError

        self.methods.append(method)
        plural = path.rstrip("/").rsplit("/", 1)[-1]
        if plural in self.forbidden:
            raise KubeError(403, "Forbidden", f"cannot list resource {plural!r}")
        return {"items": self.objects.get(plural, []), "metadata": {}}

    def get(self, res: Any, namespace: str, name: str) -> dict[str, Any] | None:
        self.methods.append("GET")
        found = [o for o in self.objects.get(res.plural, []) if o["metadata"]["name"] == name]
        return found[0] if found else None


def _body(kind: str, name: str, uid: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {"targetRef": {"kind": "Deployment", "name": "web"}}, **extra}  # fmt: skip


def test_explain_reads_only_and_notes_children_it_may_not_list() -> None:
    from appinfra.explain import explain

    labels = {
        "app.kubernetes.io/managed-by": "appinfra",
        "appinfra.dev/owner-kind": "ServiceProfile",
        "appinfra.dev/owner-name": "sp",
    }
    config = {"metadata": {"name": "sp-config", "labels": labels,
                           "ownerReferences": [{"controller": True, "uid": "u1"}]}}  # fmt: skip
    other = _body("ServiceProfile", "elsewhere", "u3")
    other["spec"]["targetRef"]["name"] = "not-web"
    kube = FakeKube(
        {
            "deployments": [{"metadata": {"name": "web", "managedFields": []}}],
            "serviceprofiles": [_body("ServiceProfile", "sp", "u1"), other],
            "secretbindings": [_body("SecretBinding", "db", "u2",
                                     status={"targetSecret": "db", "lastSyncTime": "t1"})],
            "configmaps": [config],
        },
        forbidden={"secrets"},
    )  # fmt: skip
    exp = explain(kube, "ns", "web")  # type: ignore[arg-type]
    assert set(kube.methods) == {"GET"}  # reads only
    assert [(r.kind, r.name) for r in exp.resources] == [
        ("ServiceProfile", "sp"),
        ("SecretBinding", "db"),
    ]
    sp, db = exp.resources
    assert sp.children == [Child("ConfigMap", "sp-config", "exists, owned by ServiceProfile/sp")]
    assert db.children == [Child("Secret", "db", "unknown (no access to Secrets)")]
    assert db.secret == SecretSync("db", "t1", None)
    assert exp.notes == [
        "Secrets not shown: no access to list them (cannot list resource 'secrets')"
    ]
    assert "note: Secrets not shown" in render_text(exp)
    assert json.loads(render_json(exp))["notes"] == exp.notes
