"""`appinfra render` shows what the operator writes: the examples (full and minimal, all
four kinds) applied to the real API server with the session operator, every object
and target field it wrote read back, and compared with `appinfra render` for the same
files and the same operator configuration.

"What the operator wrote" is each object cut down to the fields the kind's field manager
owns (metadata.managedFields), so a field render shows that the operator does not write
fails, and so does one the operator writes that render leaves out. Fields on targets are
applied, so that is compared exactly. Children are created with a POST, whose
managedFields entry also holds the API server's defaults: there, everything render shows
must be in what the operator owns, and everything the operator owns must be in the
rendered object as the API server defaults it (a server-side dry-run create).

Ignored: the `appinfra.dev/applied*` and `appinfra.dev/sb.*` hash annotations
(bookkeeping of the diff), the ownerReference uid, and secret values (placeholders
offline; the keys are compared).
Problems are compared too: render's stderr must state each resource's Ready=False
condition in the operator's own words.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import Operator, Stores
from tests.support.kube import Cluster
from tests.support.objects import apply, condition, deployment, get, wait_condition
from tests.support.servers import REPO, tool

Obj = dict[str, Any]
EXAMPLES = REPO / "examples"
PLACEHOLDER = "<value>"
UID = "<uid>"
HASH = "<hmac>"


def examples_in(namespace: str) -> list[Obj]:
    """The full and the minimal examples, moved into `namespace` (remote keys too: the
    store's keyPrefix is the namespace)."""
    docs = []
    for path in [*sorted(EXAMPLES.glob("*.yaml")), *sorted((EXAMPLES / "minimal").glob("*.yaml"))]:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc["kind"] == "Namespace":
                continue
            doc["metadata"]["namespace"] = namespace
            spec = doc.get("spec") or {}
            for ref in [d["remoteRef"] for d in spec.get("data") or []] + [
                d["extract"] for d in spec.get("dataFrom") or []
            ]:
                ref["key"] = ref["key"].replace("shop/", f"{namespace}/", 1)
            docs.append(doc)
    return docs


def render(stores: Stores, docs: list[Obj], tmp_path: Path) -> tuple[list[Obj], str]:
    files = tmp_path / "input.yaml"
    files.write_text(yaml.safe_dump_all(docs))
    proc = subprocess.run(
        [tool("appinfra"), "render", "-f", str(files), "--config", str(stores.config_path)],
        capture_output=True,
        text=True,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d], proc.stderr


def project(value: Any, fields: Obj) -> Any:
    """`value` cut down to the fields a managedFields (FieldsV1) entry names."""
    children = {k: v for k, v in fields.items() if k != "."}
    if not children:
        return value  # a leaf, an atomic list or map: owned whole
    if isinstance(value, dict):
        return {
            k[2:]: project(value[k[2:]], sub)
            for k, sub in children.items()
            if k.startswith("f:") and k[2:] in value
        }
    out = []
    for item in value:
        for key, sub in children.items():
            if key.startswith("k:"):
                wanted = json.loads(key[2:])
                if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items()):
                    out.append(project(item, sub))
            elif key.startswith("v:") and json.loads(key[2:]) == item:
                out.append(item)
    return out


def owned_by(live: Obj, manager: str) -> Obj:
    fields: Obj = {}
    for entry in live["metadata"].get("managedFields") or []:
        if entry["manager"] == manager and not entry.get("subresource"):
            fields = merge(fields, entry.get("fieldsV1") or {})
    assert fields, f"{manager} owns nothing on {live['kind']} {live['metadata']['name']}"
    projected: Obj = project(live, fields)
    return projected


def merge(a: Obj, b: Obj) -> Obj:
    out = dict(a)
    for key, value in b.items():
        out[key] = merge(out[key], value) if key in out else value
    return out


def comparable(obj: Obj, remote_keys: frozenset[str] = frozenset()) -> Obj:
    """What both sides are compared on (see the module docstring); `remote_keys`: keys
    of the Secret that only the remote secret knows (dataFrom)."""
    obj = copy.deepcopy(obj)
    for key in ("apiVersion", "kind"):
        obj.pop(key, None)
    meta = obj.setdefault("metadata", {})
    for key in ("name", "namespace"):
        meta.pop(key, None)
    annotations = {
        k: (HASH if k == "appinfra.dev/secret-hash" else v)
        for k, v in (meta.pop("annotations", None) or {}).items()
        # what the operator last applied, as a hash (a Secret's, per binding: sb.<name>)
        if not k.startswith(("appinfra.dev/applied", "appinfra.dev/sb."))
    }
    if annotations:
        meta["annotations"] = annotations
    for ref in meta.get("ownerReferences") or []:
        ref["uid"] = UID
    template_meta = obj.get("spec", {}).get("template", {}).get("metadata", {})
    if "appinfra.dev/secret-hash" in template_meta.get("annotations", {}):
        template_meta["annotations"]["appinfra.dev/secret-hash"] = HASH
    if obj.get("stringData") is not None:  # render shows the values as text
        obj["data"] = obj.pop("stringData")
    if "data" in obj and meta.get("labels", {}).get("appinfra.dev/owner-kind") == "SecretBinding":
        obj["data"] = {k: PLACEHOLDER for k in [*obj["data"], *remote_keys]}
    if not meta:
        obj.pop("metadata")
    return obj


def contains(big: Any, small: Any) -> bool:
    """Every field of `small` is in `big` with the same value (lists item by item)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(
            k in big and contains(big[k], v) for k, v in small.items()
        )
    if isinstance(small, list):
        return (
            isinstance(big, list)
            and len(big) == len(small)
            and all(contains(b, s) for b, s in zip(big, small, strict=True))
        )
    return bool(big == small)


def defaulted(cluster: Cluster, rendered: Obj, live: Obj) -> Obj:
    """`rendered` as the API server stores it (defaults filled in): a dry-run create under
    another name, with the live owner's uid."""
    obj = copy.deepcopy(rendered)
    obj["metadata"]["name"] += "-render-check"
    uids = {(r["kind"], r["name"]): r["uid"] for r in live["metadata"].get("ownerReferences") or []}
    for ref in obj["metadata"].get("ownerReferences") or []:
        ref["uid"] = uids.get((ref["kind"], ref["name"]), ref["uid"])
    proc = cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-",
                           input=json.dumps(obj))  # fmt: skip
    out: Obj = json.loads(proc.stdout)
    return out


def manager_of(obj: Obj) -> str:
    """The field manager that writes `obj`: the owner's for a child (a SecretBinding's
    Secret has one per binding), the kind named by the target annotation otherwise."""
    labels = obj["metadata"].get("labels") or {}
    kind = labels.get("appinfra.dev/owner-kind")
    if kind == "SecretBinding":
        return f"appinfra-secretbinding/{labels['appinfra.dev/owner-name']}"
    if kind:
        return f"appinfra-{kind.lower()}"
    (annotation,) = [
        k
        for k in obj["metadata"]["annotations"]
        if k.startswith("appinfra.dev/") and k[len("appinfra.dev/") :] in KIND_OF
    ]
    return f"appinfra-{annotation.split('/')[1]}"


KIND_OF = {k.lower(): k for k in ("ServiceProfile", "SecretBinding", "HealthPolicy",
                                  "RateLimitPolicy")}  # fmt: skip


def expected_ready(docs: list[Obj], stderr: str) -> dict[tuple[str, str], tuple[str, str] | None]:
    """Per resource: the (reason, message) render says Ready=False has, or None (Ready)."""
    out: dict[tuple[str, str], tuple[str, str] | None] = {}
    for doc in docs:
        if doc["kind"] not in KIND_OF.values():
            continue
        meta = doc["metadata"]
        prefix = f"{doc['kind']} {meta['namespace']}/{meta['name']}: "
        lines = [line[len(prefix) :] for line in stderr.splitlines() if line.startswith(prefix)]
        if not lines:
            out[(doc["kind"], meta["name"])] = None
            continue
        (line,) = lines
        reason, message = line.split(": ", 1)
        out[(doc["kind"], meta["name"])] = (reason, message)
    return out


def assert_status_says_what_render_says(
    cluster: Cluster, namespace: str, expected: dict[tuple[str, str], tuple[str, str] | None]
) -> None:
    for (kind, name), problem in expected.items():
        if problem is None:
            wait_condition(cluster, kind.lower(), namespace, name, "Ready", "True", timeout=90)
            continue
        reason, message = problem
        obj = wait_condition(
            cluster, kind.lower(), namespace, name, "Ready", "False", reason, timeout=90
        )
        assert condition(obj, "Ready")["message"] == message, (kind, name)


def test_render_matches_what_the_operator_writes_for_every_kind(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str, tmp_path: Path
) -> None:
    bao = stores.bao.secrets.kv.v2
    remote_api = {"API_KEY": "k-1", "API_URL": "https://api"}
    bao.create_or_update_secret(path=f"{namespace}/payments/db", secret={"password": "pw-1"})
    bao.create_or_update_secret(path=f"{namespace}/payments/api", secret=remote_api)
    docs = examples_in(namespace)
    assert {d["kind"] for d in docs} >= set(KIND_OF.values())
    apply(cluster, *docs)
    rendered, stderr = render(stores, docs, tmp_path)
    expected = expected_ready(docs, stderr)
    # The example RateLimitPolicy has a limit ingress-nginx cannot express; all else is Ready.
    assert [k for k, v in expected.items() if v] == [("RateLimitPolicy", "payments")], stderr
    assert_status_says_what_render_says(cluster, namespace, expected)

    seen = set()
    for want in rendered:
        kind, name = want["kind"], want["metadata"]["name"]
        assert want["metadata"]["namespace"] == namespace
        live = get(cluster, kind.lower(), namespace, name)
        assert live is not None, f"{kind} {name} rendered, but the operator did not write it"
        # dataFrom brings every property of the remote secret; render shows those the
        # templates read (none, in the example), so the rest is added here by name.
        extra = frozenset(remote_api) if name == "payments-db" else frozenset()
        manager = manager_of(want)
        owned = comparable(owned_by(live, manager))
        report = f"{kind} {name}, manager {manager}\n" + json.dumps(
            {"operator": owned, "rendered": comparable(want, extra)}, indent=1
        )
        if "appinfra.dev/owner-kind" not in (want["metadata"].get("labels") or {}):
            assert owned == comparable(want), report  # applied fields: exactly these
        else:
            assert contains(owned, comparable(want, extra)), report
            server = comparable(defaulted(cluster, want, live), extra)
            assert contains(server, owned), (
                report + "\nas the API server defaults it:\n" + (json.dumps(server, indent=1))
            )
        seen.add((kind, name, manager))
    sp = "appinfra-serviceprofile"
    assert {(k, m) for k, _, m in seen} >= {
        ("ConfigMap", sp), ("HorizontalPodAutoscaler", sp), ("NetworkPolicy", sp),
        ("PodDisruptionBudget", sp), ("ServiceMonitor", sp), ("Deployment", sp),
        ("Secret", "appinfra-secretbinding/payments-db"),
        ("Secret", "appinfra-secretbinding/hello"), ("Deployment", "appinfra-secretbinding"),
        ("Deployment", "appinfra-healthpolicy"), ("Ingress", "appinfra-ratelimitpolicy"),
        ("ConfigMap", "appinfra-ratelimitpolicy"),
    }  # fmt: skip
    secret = get(cluster, "secret", namespace, "payments-db") or {}
    dsn = base64.b64decode(secret["data"]["DSN"]).decode()
    assert dsn == "postgresql://app:pw-1@db.shop.svc:5432/shop"  # the real sync, for contrast
    assert "pw-1" not in json.dumps(rendered) + stderr


def test_render_states_problems_in_the_operators_words(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str, tmp_path: Path
) -> None:
    stores.bao.secrets.kv.v2.create_or_update_secret(
        path=f"{namespace}/db", secret={"password": "pw"}
    )

    def res(kind: str, name: str, **spec: Any) -> Obj:
        return {"apiVersion": "appinfra.dev/v1alpha1", "kind": kind,
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip

    key = {"key": f"{namespace}/db", "property": "password"}
    data = [{"secretKey": "PASSWORD", "remoteRef": key}]
    target = {"kind": "Deployment", "name": "web"}
    docs = [
        deployment(namespace, "web"),
        deployment(namespace, "other"),  # one ServiceProfile per Deployment (the oldest wins)
        deployment(namespace, "mon"),
        res("SecretBinding", "unknown-store", store="nope", data=data),
        res("SecretBinding", "outside-prefix", store="vault-main",
            data=[{"secretKey": "K", "remoteRef": {"key": "elsewhere/db"}}]),
        res("SecretBinding", "no-consumer", store="vault-main", data=data,
            targetRef={"kind": "Deployment", "name": "absent"}),
        res("SecretBinding", "bad-template", store="vault-main", data=data,
            target={"template": {"data": {"DSN": "{{ PASSWORD | nosuchfilter }}"}}}),
        res("ServiceProfile", "web", targetRef=target, config={"data": {"A": "${MISSING}"}}),
        res("ServiceProfile", "no-cm", targetRef={"kind": "Deployment", "name": "other"},
            config={"variablesFrom": [{"configMapRef": {"name": "absent"}}]}),
        res("ServiceProfile", "mon", targetRef={"kind": "Deployment", "name": "mon"},
            monitoring={"port": "http", "service": "absent"}),
        res("HealthPolicy", "web", targetRef=target, containers=["nope"],
            readiness={"tcpSocket": {"port": 8080}}),
        res("HealthPolicy", "absent", targetRef={"kind": "Deployment", "name": "absent"},
            readiness={"tcpSocket": {"port": 8080}}),
        res("RateLimitPolicy", "web", targetRef=target,
            limits={"default": {"requests": 1, "unit": "Second"}}),
    ]  # fmt: skip
    apply(cluster, *docs)
    rendered, stderr = render(stores, docs, tmp_path)
    expected = expected_ready(docs, stderr)
    problems = {k: v[0] for k, v in expected.items() if v}
    assert problems == {
        ("SecretBinding", "unknown-store"): "Invalid",
        ("SecretBinding", "outside-prefix"): "Forbidden",
        ("SecretBinding", "no-consumer"): "TargetNotFound",
        ("SecretBinding", "bad-template"): "TemplateError",
        ("ServiceProfile", "web"): "Invalid",
        ("ServiceProfile", "no-cm"): "Invalid",
        ("ServiceProfile", "mon"): "ServiceNotFound",
        ("HealthPolicy", "web"): "Invalid",
        ("HealthPolicy", "absent"): "TargetNotFound",
        ("RateLimitPolicy", "web"): "Invalid",
    }, stderr
    assert_status_says_what_render_says(cluster, namespace, expected)
    # Only the binding without its consumer writes anything (its Secret), and the profile
    # whose only problem is its monitor's Service (the rest of it: the Deployment's fields).
    assert [(d["kind"], d["metadata"]["name"]) for d in rendered] == [
        ("Secret", "no-consumer"), ("Deployment", "mon")
    ]  # fmt: skip
