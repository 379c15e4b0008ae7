"""`appinfra render` offline: every kind, --config, problems as status states them,
placeholders instead of secret values, a stable output."""

from __future__ import annotations

import copy
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from appinfra import cli
from appinfra.render.offline import render_paths

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
EXAMPLE_CONFIG = EXAMPLES / "operator-config" / "config.yaml"
NS = "shop"

Obj = dict[str, Any]


def deployment(name: str = "web", containers: tuple[str, ...] = ("app",)) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": c, "image": "x", "ports": [{"name": "http", "containerPort": 80}]}
                        for c in containers
                    ]
                },
            },
        },
    }


def ingress(name: str = "web") -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": NS}, "spec": {}}  # fmt: skip


def resource(kind: str, name: str = "web", **spec: Any) -> Obj:
    return {"apiVersion": "appinfra.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": NS}, "spec": spec}  # fmt: skip


def binding(name: str = "web-db", **spec: Any) -> Obj:
    password = {"key": "shop/db", "property": "password"}
    spec.setdefault("data", [{"secretKey": "PASSWORD", "remoteRef": password}])
    return resource("SecretBinding", name, store="vault-main", **spec)


@pytest.fixture
def write(tmp_path: Path) -> Any:
    counter = iter(range(1000))

    def _write(*docs: Obj) -> str:
        path = tmp_path / f"in-{next(counter)}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return str(path)

    return _write


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def render(*paths: str, config: str | None = None) -> tuple[int, list[Obj], str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = render_paths(list(paths), config, out, err)
    docs = [d for d in yaml.safe_load_all(out.getvalue()) if d]
    return rc, docs, err.getvalue(), out.getvalue()


def kinds(docs: list[Obj]) -> list[str]:
    return [d["kind"] for d in docs]


# --- every kind from the examples ---------------------------------------------------


def test_examples_render_every_kind_with_the_example_config() -> None:
    rc, docs, err, _ = render(str(EXAMPLES), config=str(EXAMPLE_CONFIG))
    assert kinds(docs) == [
        "ConfigMap", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget",
        "ServiceMonitor",  # through the example Service, which selects the pods
        "Deployment",  # ServiceProfile's fields
        "Secret", "Deployment",  # SecretBinding: the Secret, the consumer's hash
        "Deployment",  # HealthPolicy's probes
        "Ingress",  # RateLimitPolicy's annotations
    ]  # fmt: skip
    assert "not implemented" not in err
    # The example's second limit has a `when` ingress-nginx cannot express: the
    # operator's status says PartiallyEnforced, and so does render (exit 1).
    assert rc == 1
    assert "RateLimitPolicy shop/payments: PartiallyEnforced: limit default" in err


def test_minimal_examples_render_clean() -> None:
    rc, docs, err, _ = render(str(EXAMPLES / "minimal"), config=str(EXAMPLE_CONFIG))
    assert rc == 0, err
    owners = {d["metadata"].get("labels", {}).get("appinfra.dev/owner-kind") for d in docs}
    annotated = {k for d in docs for k in d["metadata"].get("annotations", {})}
    assert {"ServiceProfile", "SecretBinding", "RateLimitPolicy"} <= owners
    assert {"appinfra.dev/serviceprofile", "appinfra.dev/healthpolicy"} <= annotated


def test_output_is_stable_and_commented(write: Any) -> None:
    limits = {"b": {"requests": 1, "unit": "Minute"}, "a": {"requests": 2, "unit": "Second"}}
    rlp = resource("RateLimitPolicy", targetRef={"name": "web"}, enforcement="ConfigMap",
                   limits=limits)  # fmt: skip
    shuffled = copy.deepcopy(rlp)
    shuffled["spec"]["limits"] = dict(reversed(limits.items()))
    first = render(write(deployment(), rlp))[3]
    assert first == render(write(deployment(), rlp))[3]
    assert first == render(write(deployment(), shuffled))[3]
    assert first.startswith("---\n# RateLimitPolicy shop/web: created and owned")


# --- ServiceProfile ------------------------------------------------------------------


def test_serviceprofile_without_its_deployment_is_target_not_found(write: Any) -> None:
    rc, docs, err, _ = render(write(resource("ServiceProfile", targetRef={"name": "web"},
                                             config={"data": {"A": "1"}})))  # fmt: skip
    assert rc == 1 and docs == []  # the operator writes nothing without its target
    assert (
        "ServiceProfile shop/web: TargetNotFound: Deployment web not found in namespace "
        "shop; it will be configured as soon as it is created"
    ) in err
    assert "pass the Deployment web manifest with -f" in err


def test_serviceprofile_variables_from_a_configmap_among_the_files(write: Any) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "env"},
          "data": {"HOST": "db.prod"}}  # no namespace: lands in the profile's  # fmt: skip
    sp = resource("ServiceProfile", targetRef={"name": "web"},
                  config={"data": {"DB": "${HOST}"},
                          "variablesFrom": [{"configMapRef": {"name": "env"}}]})  # fmt: skip
    rc, docs, err, _ = render(write(sp, deployment()), write(cm))
    assert rc == 0, err
    assert docs[0]["data"] == {"DB": "db.prod"}


def test_serviceprofile_missing_configmap_and_variable_in_the_operators_words(
    write: Any,
) -> None:
    sp = resource("ServiceProfile", targetRef={"name": "web"},
                  config={"variablesFrom": [{"configMapRef": {"name": "env"}}]})  # fmt: skip
    rc, _, err, _ = render(write(sp, deployment()))
    assert rc == 1
    assert (
        "ServiceProfile shop/web: Invalid: spec.config.variablesFrom[0].configMapRef.name: "
        "ConfigMap env not found in namespace shop; create it or remove the entry"
    ) in err
    sp = resource("ServiceProfile", targetRef={"name": "web"}, config={"data": {"A": "${NOPE}"}})
    rc, docs, err, _ = render(write(sp, deployment()))
    assert rc == 1 and docs == []
    assert "Invalid: spec.config.data: no value and no default for variable(s) NOPE;" in err


def _service(name: str, selector: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": selector}}  # fmt: skip


def test_serviceprofile_monitoring_is_a_servicemonitor_only_with_a_service_among_the_files(
    write: Any,
) -> None:
    sp = resource("ServiceProfile", targetRef={"name": "web"}, monitoring={"port": "http"})
    rc, docs, err, _ = render(write(sp, deployment()))
    assert rc == 0, err
    assert kinds(docs) == ["PodMonitor", "Deployment"]
    assert (
        "note: ServiceProfile shop/web: spec.monitoring: a PodMonitor, as no Service among the "
        "documents selects the pods of Deployment web; in the cluster, a Service that does "
        "makes it a ServiceMonitor (pass it with -f to see that)"
    ) in err
    assert "needs the Prometheus Operator's CRDs" in err
    rc, docs, err, _ = render(write(sp, deployment(), _service("web", {"app": "web"})))
    assert rc == 0, err
    assert kinds(docs) == ["ServiceMonitor", "Deployment"]
    assert docs[0]["spec"]["endpoints"][0]["relabelings"][0]["regex"] == "web"
    assert "a PodMonitor, as no Service" not in err


def test_serviceprofile_monitoring_named_service_missing_in_the_operators_words(
    write: Any,
) -> None:
    monitoring = {"port": 8080, "service": "metrics"}
    sp = resource("ServiceProfile", targetRef={"name": "web"}, monitoring=monitoring,
                  disruption={"minAvailable": 1})  # fmt: skip
    rc, docs, err, _ = render(write(sp, deployment(), _service("web", {"app": "web"})))
    assert rc == 1
    assert kinds(docs) == ["PodDisruptionBudget", "Deployment"]  # the rest is written
    assert (
        "ServiceProfile shop/web: ServiceNotFound: spec.monitoring.service: Service metrics not "
        "found in namespace shop;"
    ) in err


def test_resources_sharing_a_target_are_noted(write: Any) -> None:
    one = resource("ServiceProfile", "one", targetRef={"name": "web"}, config={"data": {}})
    two = resource("ServiceProfile", "two", targetRef={"name": "web"}, config={"data": {}})
    _, _, err, _ = render(write(one, two, deployment()))
    assert (
        "note: ServiceProfiles one, two all target Deployment web in namespace shop: in the "
        "cluster only the oldest acts, the others are Conflicted"
    ) in err


def test_invalid_spec_is_reported_like_admission(write: Any) -> None:
    rc, docs, err, _ = render(write(resource("ServiceProfile", targetRef={"name": "web"},
                                             autoscaling={"maxReplicas": "3"})))  # fmt: skip
    assert rc == 1 and docs == []
    assert "ServiceProfile shop/web: Invalid: spec.autoscaling.maxReplicas:" in err


# --- HealthPolicy --------------------------------------------------------------------


def test_healthpolicy_renders_probes_on_its_deployment(write: Any) -> None:
    hp = resource("HealthPolicy", targetRef={"name": "web"},
                  readiness={"httpGet": {"path": "/ready", "port": "http"}})  # fmt: skip
    rc, docs, err, _ = render(write(hp, deployment()))
    assert rc == 0, err
    (intent,) = docs
    assert intent["metadata"]["annotations"] == {"appinfra.dev/healthpolicy": "web"}
    (container,) = intent["spec"]["template"]["spec"]["containers"]
    probe = {"httpGet": {"path": "/ready", "port": "http"}}
    assert container == {"name": "app", "readinessProbe": probe}


def test_healthpolicy_unknown_container_is_invalid(write: Any) -> None:
    hp = resource("HealthPolicy", targetRef={"name": "web"}, containers=["nope"],
                  readiness={"httpGet": {"path": "/", "port": 80}})  # fmt: skip
    rc, docs, err, _ = render(write(hp, deployment()))
    assert rc == 1 and docs == []
    assert 'HealthPolicy shop/web: Invalid: spec.containers: Deployment "web" has no ' in err


# --- RateLimitPolicy and the configured default enforcement -------------------------


def test_ratelimitpolicy_default_enforcement_comes_from_config(write: Any, tmp_path: Path) -> None:
    rlp = resource("RateLimitPolicy", targetRef={"name": "web"},
                   limits={"default": {"requests": 5, "unit": "Second"}})  # fmt: skip
    files = write(rlp, deployment())
    # No --config: the operator's built-in default, IngressNginx, cannot limit a Deployment.
    rc, docs, err, _ = render(files)
    assert rc == 1 and docs == []
    assert (
        "RateLimitPolicy shop/web: Invalid: spec.enforcement: the operator's default "
        "enforcement IngressNginx needs an Ingress target, not a Deployment; set "
        "spec.enforcement"
    ) in err
    config = config_file(tmp_path, "rateLimit: {defaultEnforcement: ConfigMap}\n")
    rc, docs, err, _ = render(files, config=config)
    assert rc == 0, err
    (cm,) = docs
    assert cm["metadata"]["name"] == "web-ratelimit" and "limits.json" in cm["data"]
    assert "enforcement ConfigMap: the operator configuration's default" in err


def test_ratelimitpolicy_ingress_annotations(write: Any) -> None:
    rlp = resource("RateLimitPolicy", targetRef={"group": "networking.k8s.io", "kind": "Ingress",
                   "name": "web"}, limits={"default": {"requests": 5, "unit": "Minute",
                                                       "by": {"clientIP": {}}}})  # fmt: skip
    rc, docs, err, _ = render(write(rlp, ingress()))
    assert rc == 0, err
    (intent,) = docs
    assert intent["kind"] == "Ingress"
    assert intent["metadata"]["annotations"]["nginx.ingress.kubernetes.io/limit-rpm"] == "5"
    rc, docs, err, _ = render(write(rlp))
    assert rc == 1 and "TargetNotFound: Ingress web not found in namespace shop" in err


# --- SecretBinding: placeholders, stores and access rules from --config ---------------


def test_secretbinding_values_are_placeholders_and_templates_render_over_them(
    write: Any,
) -> None:
    sb = binding(
        dataFrom=[{"extract": {"key": "shop/api", "version": 3}}],
        target={"name": "creds", "template": {"data": {
            "DSN": "pg://{{ PASSWORD }}@db", "URL": "{{ API_URL }}/v1"}}},
        targetRef={"name": "web"},
    )  # fmt: skip
    rc, docs, err, _ = render(write(sb, deployment()))
    assert rc == 0, err
    secret, consumer = docs
    assert secret["metadata"]["name"] == "creds" and "data" not in secret
    assert secret["stringData"] == {
        "API_URL": "<from vault-main: shop/api#API_URL (version 3)>",
        "DSN": "pg://<from vault-main: shop/db#password>@db",
        "PASSWORD": "<from vault-main: shop/db#password>",
        "URL": "<from vault-main: shop/api#API_URL (version 3)>/v1",
    }
    hash_ = consumer["spec"]["template"]["metadata"]["annotations"]["appinfra.dev/secret-hash"]
    assert hash_.startswith("<HMAC")
    assert "secret values are placeholders" in err
    assert "spec.dataFrom[0] (shop/api): every property of the remote secret" in err


def test_secretbinding_whole_value_orphan_and_no_rollout(write: Any) -> None:
    sb = binding(data=[{"secretKey": "TOKEN", "remoteRef": {"key": "shop/token"}}],
                 target={"creationPolicy": "Orphan"}, targetRef={"name": "web"},
                 rolloutOnChange=False)  # fmt: skip
    rc, docs, err, _ = render(write(sb, deployment()))
    assert rc == 0, err
    secret, consumer = docs
    assert secret["stringData"] == {"TOKEN": "<from vault-main: shop/token>"}
    assert "ownerReferences" not in secret["metadata"]
    assert "spec" not in consumer  # only the annotation naming the binding


def test_secretbinding_store_must_be_configured(write: Any, tmp_path: Path) -> None:
    files = write(resource("SecretBinding", "b", store="nope",
                           data=[{"secretKey": "K", "remoteRef": {"key": "shop/k"}}]))  # fmt: skip
    rc, docs, err, _ = render(files, config=str(EXAMPLE_CONFIG))
    assert rc == 1 and docs == []
    assert (
        "SecretBinding shop/b: Invalid: spec.store: store 'nope' is not configured "
        "(configured stores: aws-main, vault-main); ask the cluster admin or fix the name"
    ) in err
    rc, _, err, _ = render(files, config=config_file(tmp_path, ""))
    assert "(configured stores: none)" in err
    rc, docs, err, _ = render(files)  # no configuration: nothing to check against
    assert rc == 0 and kinds(docs) == ["Secret"]
    assert "no --config given: whether store 'nope' exists" in err


def test_secretbinding_access_rules_from_config(write: Any) -> None:
    outside = binding(data=[{"secretKey": "K", "remoteRef": {"key": "other/k"}}])
    rc, docs, err, _ = render(write(outside), config=str(EXAMPLE_CONFIG))
    assert rc == 1 and docs == []
    assert (
        "SecretBinding shop/web-db: Forbidden: key 'other/k' is outside store 'vault-main''s "
        "keyPrefix: keys of bindings in namespace 'shop' must start with 'shop/'"
    ) in err
    elsewhere = binding()
    elsewhere["metadata"]["namespace"] = "prod"
    rc, _, err, _ = render(write(elsewhere), config=str(EXAMPLE_CONFIG))
    assert "Forbidden: store 'vault-main' does not allow namespace 'prod'" in err


def test_secretbinding_consumer_missing_and_template_error(write: Any) -> None:
    rc, docs, err, _ = render(write(binding(targetRef={"name": "web"})))
    assert rc == 1 and kinds(docs) == ["Secret"]  # synced, not rolled out
    assert (
        "SecretBinding shop/web-db: TargetNotFound: Deployment web not found; the Secret is "
        "synced and will be rolled out once it exists"
    ) in err
    broken = binding(target={"template": {"data": {"X": "{{ PASSWORD "}}})
    rc, docs, err, _ = render(write(broken))
    assert rc == 1 and docs == []
    assert "SecretBinding shop/web-db: TemplateError: spec.target.template.data.X" in err


def test_secretbinding_merge_writes_only_its_keys(write: Any) -> None:
    rc, docs, err, _ = render(write(binding(target={"name": "shared",
                                                    "creationPolicy": "Merge"})))  # fmt: skip
    assert rc == 0, err
    (secret,) = docs
    assert secret["metadata"] == {"name": "shared", "namespace": "shop"}
    assert "appinfra.dev/merge-from: web-db (not checked offline)" in err


def test_secretbinding_too_many_keys(write: Any) -> None:
    template = {f"T{i}": "x" for i in range(1000)}
    data = [{"secretKey": f"D{i}", "remoteRef": {"key": "shop/k", "property": f"p{i}"}}
            for i in range(25)]  # fmt: skip
    rc, docs, err, _ = render(write(binding(data=data, target={"template": {"data": template}})))
    assert rc == 1 and docs == []
    assert "TooManyKeys: spec.dataFrom, spec.data and spec.target.template.data: 1,025 keys" in err


# --- files and configuration ---------------------------------------------------------


def test_bad_config_and_files_are_errors_naming_them(write: Any, tmp_path: Path) -> None:
    files = write(deployment())
    bad = config_file(tmp_path, "rateLimit: {defaultEnforcement: Nginx}\n")
    rc, _, err, _ = render(files, config=bad)
    assert rc == 1 and f"error: --config {bad}: invalid operator configuration" in err
    assert "rateLimit.defaultEnforcement" in err
    rc, _, err, _ = render(files, config=str(tmp_path / "missing.yaml"))
    assert rc == 1 and "cannot read" in err
    rc, _, err, _ = render(str(tmp_path / "nope.yaml"))
    assert rc == 1 and "nope.yaml: cannot read" in err


def test_lists_are_opened_and_namespace_defaults(write: Any) -> None:
    hp = resource("HealthPolicy", targetRef={"name": "web"},
                  readiness={"tcpSocket": {"port": 80}})  # fmt: skip
    dep = deployment()
    for obj in (hp, dep):
        del obj["metadata"]["namespace"]
    rc, docs, err, _ = render(write({"apiVersion": "v1", "kind": "List", "items": [hp, dep]}))
    assert rc == 0, err
    assert docs[0]["metadata"]["namespace"] == "default"


def test_cli_render_with_config(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["render", "-f", str(EXAMPLES / "minimal"), "--config", str(EXAMPLE_CONFIG)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "kind: Secret" in captured.out


def test_a_reader_that_stops_early_gets_no_traceback(write: Any) -> None:
    """`appinfra render ... | head -1`: the pipe closes under the writer; the command
    ends as a shell expects (141, SIGPIPE's status) without a traceback. The output is
    made larger than a pipe's buffer, so the writer is still writing when it closes."""
    docs = []
    for i in range(200):
        docs += [deployment(f"web-{i}"), resource("ServiceProfile", f"web-{i}",
                 targetRef={"kind": "Deployment", "name": f"web-{i}"},
                 config={"data": {"LEVEL": "info"}})]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "appinfra", "render", "-f", write(*docs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()
    proc.stdout.close()  # `head -1` exits
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
