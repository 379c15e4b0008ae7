"""The validating admission webhook (#17 item 1), against the real API server calling
a real `appinfra run --webhook-port` over TLS on loopback.

The API server is told about the webhook the way the chart does it: a
ValidatingWebhookConfiguration with the CA bundle, failurePolicy Ignore, and a
namespaceSelector (here: only this test's namespace, so no other test sees it).

Asserted: each resource the status would reject for a reason CEL cannot see is
refused by `kubectl apply` at once, with exactly the message the status shows for it
later; a second profile on one Deployment is a warning, not a denial; a good
resource passes; with the operator stopped, the same bad resources are accepted
(failurePolicy Ignore: a down operator blocks nobody) and, once it runs again, the
status reports each problem with the message the webhook gave.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import Operator, Stores
from tests.e2e.test_healthpolicy import PROBES, policy
from tests.e2e.test_secretbinding import binding, put
from tests.e2e.test_serviceprofile import profile
from tests.support.kube import Cluster
from tests.support.objects import apply, deployment, wait_condition
from tests.support.servers import free_port, wait_until

SB, SP = "secretbinding", "serviceprofile"
DENIED = 'admission webhook "validate.appinfra.dev" denied the request: '


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificates(folder: Path) -> bytes:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it, written as
    tls.crt/tls.key (what the chart mounts); returns the CA's PEM (the caBundle)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("appinfra-test-ca"))
        .issuer_name(_name("appinfra-test-ca")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    return ca.public_bytes(serialization.Encoding.PEM)


def webhook_configuration(name: str, namespace: str, port: int, ca: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "validate.appinfra.dev",
            "clientConfig": {"url": f"https://127.0.0.1:{port}/validate",
                             "caBundle": base64.b64encode(ca).decode()},
            "rules": [{"apiGroups": ["appinfra.dev"], "apiVersions": ["v1alpha1"],
                       "operations": ["CREATE", "UPDATE"],
                       "resources": ["secretbindings", "serviceprofiles",
                                     "healthpolicies", "ratelimitpolicies"]}],
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        }],
    }  # fmt: skip


def webhook_operator(cluster: Cluster, workdir: Path, namespace: str, port: int) -> Operator:
    op = Operator(cluster, workdir, f"webhook-{namespace}", "--webhook-port", str(port),
                  "--webhook-cert-dir", str(workdir / f"webhook-{namespace}"))  # fmt: skip
    # Only this test's namespace: the session operator (if running) has the others.
    args = op.process.argv
    args[args.index("--all-namespaces")] = f"--namespace={namespace}"
    return op.start()


def apply_result(cluster: Cluster, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    doc = {"apiVersion": "v1", "kind": "List", "items": [obj]}
    return cluster.kubectl("apply", "-f", "-", input=json.dumps(doc), check=False)


def status_message(cluster: Cluster, kind: str, namespace: str, name: str, cond: str,
                   reason: str) -> str:  # fmt: skip
    obj = wait_condition(cluster, kind, namespace, name, cond, "False", reason)
    for c in obj["status"]["conditions"]:
        if c["type"] == cond:
            message: str = c["message"]
            return message
    raise AssertionError(f"{kind}/{name} has no {cond} condition")


def test_webhook_denies_with_the_status_message_and_never_blocks_when_down(
    crds: Cluster, stores: Stores, workdir: Path, namespace: str
) -> None:
    cluster, ns = crds, namespace
    port = free_port()
    ca = certificates(workdir / f"webhook-{ns}")
    for dep in ("web-a", "web-b", "web-c", "web-d"):
        apply(cluster, deployment(ns, dep))
    users_sm = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "takes-sm", "namespace": ns},
        "spec": {"selector": {}, "endpoints": [{"port": "web"}]},
    }  # fmt: skip
    web_d = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-d", "namespace": ns},
             "spec": {"selector": {"app": "web-d"}, "ports": [{"port": 80}]}}  # fmt: skip
    apply(cluster, users_sm, web_d)
    theirs = {"name": "g", "rules": [{"alert": "Theirs", "expr": "vector(1)"}]}
    apply(cluster, {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                    "metadata": {"name": "takes-rule", "namespace": ns},
                    "spec": {"groups": [theirs]}})  # fmt: skip
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "users-cm", "namespace": ns},
            "data": {"k": "v"},
        },
    )
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "users-secret", "namespace": ns},
            "data": {},
        },
    )
    put(stores, f"{ns}/db", {"password": "never-shown"})  # so bad-template gets to render
    key = {"secretKey": "password", "remoteRef": {"key": f"{ns}/db", "property": "password"}}
    bad: dict[str, tuple[dict[str, Any], str, str, str]] = {
        # name: (object, condition, reason the status gives, a part of its message)
        "unknown-store": (binding(ns, "unknown-store", store="nope", data=[key]),
                          "Accepted", "Invalid", "store 'nope' is not configured"),
        "other-prefix": (binding(ns, "other-prefix", data=[
                             {"secretKey": "p", "remoteRef": {"key": "t-other/db"}}]),
                         "Synced", "Forbidden", "outside store 'vault-main''s keyPrefix"),
        "bad-template": (binding(ns, "bad-template", data=[key],
                                 target={"template": {"data": {"url": "{{ password"}}}),
                         "Synced", "TemplateError", "spec.target.template.data.url, line 1"),
        "takes-secret": (binding(ns, "takes-secret", data=[key],
                                 target={"name": "users-secret"}),
                         "Accepted", "Conflicted", "Secret users-secret already exists"),
        "bad-file": (profile(ns, "bad-file", "web-a",
                             config={"files": {"app.yaml": "{% if x %}no end"}}),
                     "Accepted", "Invalid", "spec.config.files.app.yaml, line 1: syntax error"),
        "takes-cm": (profile(ns, "takes-cm", "web-b", config={"name": "users-cm",
                                                              "data": {"A": "1"}}),
                     "Accepted", "Conflicted", "ConfigMap users-cm already exists"),
        "takes-sm": (profile(ns, "takes-sm", "web-d", monitoring={"kind": "ServiceMonitor",
                                                                   "port": "http"}),
                     "Accepted", "Conflicted", "ServiceMonitor takes-sm already exists"),
        "takes-rule": (policy(ns, "takes-rule", "web-d", **PROBES, alerts={}),
                       "Accepted", "Conflicted", "PrometheusRule takes-rule already exists"),
    }  # fmt: skip
    config_name = f"appinfra-{ns}"
    op = webhook_operator(cluster, workdir, ns, port)
    try:
        apply(cluster, webhook_configuration(config_name, ns, port, ca))
        # The API server picks the configuration up within a moment: wait for a denial.
        # (a probe of its own: one admitted before the webhook is active would stay)
        probe = binding(ns, "probe", store="nope", data=[key])
        wait_until(lambda: DENIED in apply_result(cluster, probe).stderr, 30, "webhook active")

        denials: dict[str, str] = {}
        for name, (obj, _, _, part) in bad.items():
            proc = apply_result(cluster, obj)
            assert proc.returncode != 0, f"{name} was admitted: {proc.stdout}"
            assert DENIED in proc.stderr and part in proc.stderr, proc.stderr
            denials[name] = proc.stderr.split(DENIED, 1)[1].strip()
            assert cluster.kubectl("get", obj["kind"], name, "-n", ns,
                                   check=False).returncode != 0  # fmt: skip
        # A denial is the webhook working, not an operator error: no ERROR line for it.
        logged = op.process.log_path.read_text(errors="replace")
        assert "failed permanently" not in logged, logged[-2000:]

        # A good profile passes; a second one on its Deployment is warned about, not denied.
        good = profile(ns, "first", "web-c", config={"data": {"A": "1"}})
        proc = apply_result(cluster, good)
        assert proc.returncode == 0 and "Warning" not in proc.stderr, proc.stderr
        wait_condition(cluster, SP, ns, "first", "Ready", "True")
        proc = apply_result(cluster, profile(ns, "second", "web-c"))
        assert proc.returncode == 0, proc.stderr
        warning = (
            "Warning: ServiceProfile first already targets Deployment web-c (the oldest "
            "wins); delete one of them or point this one elsewhere"
        )
        assert warning in proc.stderr, proc.stderr
        assert status_message(cluster, SP, ns, "second", "Accepted", "Conflicted") in warning
        # The same for every kind with a target (here a HealthPolicy).
        apply(cluster, policy(ns, "probes", "web-c", **PROBES))
        wait_condition(cluster, "healthpolicy", ns, "probes", "Accepted", "True")
        # (a name after "probes": created in the same second, the smaller name wins)
        proc = apply_result(cluster, policy(ns, "probes-2", "web-c", **PROBES))
        assert proc.returncode == 0, proc.stderr
        assert "Warning: HealthPolicy probes already targets Deployment web-c" in proc.stderr
    finally:
        op.stop()

    # The operator is down: failurePolicy Ignore lets every apply through.
    for name, (obj, _, _, _) in bad.items():
        proc = apply_result(cluster, obj)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
    # Running again: the status states each problem exactly as the webhook did.
    op = webhook_operator(cluster, workdir, ns, port)
    try:
        for name, (obj, cond, reason, _) in bad.items():
            message = status_message(cluster, obj["kind"], ns, name, cond, reason)
            assert message == denials[name], (name, message, denials[name])
    finally:
        op.stop()
        cluster.kubectl("delete", "validatingwebhookconfiguration", config_name, check=False)
