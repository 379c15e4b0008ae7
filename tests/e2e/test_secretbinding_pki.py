"""SecretBinding pki end to end: certificates from OpenBao's real PKI engine (a root CA
and a role per test namespace), through the session's `appinfra run`, observed
through the API server and counted at OpenBao's audit device."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.conftest import CANARY, Operator, Stores
from tests.support.audit import bao_requests
from tests.support.kube import Cluster
from tests.support.lifetime import PKI_MOUNT, add_store, enable_pki, pki_role
from tests.support.objects import (
    apply,
    condition,
    deployment,
    events_for,
    get,
    wait_condition,
    wait_gone,
)
from tests.support.servers import tool, wait_until

SB = "secretbinding"
STORE = "vault-pki"


@pytest.fixture(scope="module")
def pki(stores: Stores, operator: Operator) -> Iterator[str]:
    """OpenBao's PKI engine with a root CA, and a store whose keyPrefix lets a namespace
    issue only from its own roles (pki/issue/<namespace>-*)."""
    ca = enable_pki(stores.bao)
    add_store(stores, STORE, f"{PKI_MOUNT}/issue/{{namespace}}-")
    yield ca


def pki_binding(namespace: str, name: str, store: str = STORE, **pki: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"mount": PKI_MOUNT, "role": f"{namespace}-web",
                            "commonName": f"web.{namespace}.svc", **pki}  # fmt: skip
    return {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": "SecretBinding",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"store": store, "pki": spec},
    }


def tls_secret(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    secret = get(cluster, "secret", namespace, name)
    assert secret is not None
    assert secret["type"] == "kubernetes.io/tls"
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def certificate(data: dict[str, str]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data["tls.crt"].encode())


def serial_of(cert: x509.Certificate) -> str:
    digits = f"{cert.serial_number:x}"
    digits = "0" * (len(digits) % 2) + digits
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def issues(stores: Stores, namespace: str) -> int:
    """Certificates issued for this namespace's role, counted at OpenBao."""
    path = f"{PKI_MOUNT}/issue/{namespace}-web"
    return len([r for r in bao_requests(stores.bao_audit_log, path) if not r.error])


def pod_hash(cluster: Cluster, namespace: str, name: str) -> str | None:
    dep = get(cluster, "deployment", namespace, name) or {}
    annotations = dep["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations.get("appinfra.dev/secret-hash")


def test_certificate_issued_for_the_sans_renewed_before_expiry_and_rolled_out(
    cluster: Cluster, stores: Stores, pki: str, namespace: str
) -> None:
    pki_role(stores.bao, f"{namespace}-web", [f"{namespace}.svc", "cluster.local"])
    apply(cluster, deployment(namespace, "web"))
    sans = {"altNames": [f"web.{namespace}.svc.cluster.local"], "ipSANs": ["127.0.0.1"]}
    binding = pki_binding(namespace, "web-tls", ttl="12s", **sans)
    binding["spec"]["targetRef"] = {"kind": "Deployment", "name": "web"}
    apply(cluster, binding)
    sb = wait_condition(cluster, SB, namespace, "web-tls", "Ready", "True")
    data = tls_secret(cluster, namespace, "web-tls")
    assert sorted(data) == ["ca.crt", "tls.crt", "tls.key"]

    # Valid for the SANs asked, signed by the CA in ca.crt (the engine's root), with the key.
    cert = certificate(data)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {
        f"web.{namespace}.svc", f"web.{namespace}.svc.cluster.local"}  # fmt: skip
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    ca = x509.load_pem_x509_certificate(data["ca.crt"].encode())
    assert ca == x509.load_pem_x509_certificate(pki.encode())
    cert.verify_directly_issued_by(ca)
    key = serialization.load_pem_private_key(data["tls.key"].encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(seconds=11) <= lifetime <= datetime.timedelta(seconds=14)

    # Status: serial, notAfter, the renewal time; never the key.
    status = sb["status"]["certificate"]
    assert status["serial"] == serial_of(cert)
    assert status["notAfter"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    renewal = datetime.datetime.fromisoformat(status["renewalTime"])
    assert cert.not_valid_before_utc < renewal < cert.not_valid_after_utc
    assert sb["status"]["nextSyncTime"] == status["renewalTime"]
    assert "PRIVATE KEY" not in json.dumps(sb)
    first_hash = pod_hash(cluster, namespace, "web")
    assert first_hash == sb["status"]["secretHMAC"]
    assert issues(stores, namespace) == 1

    # Renewed before it expires: a new certificate in the same Secret, the consumer rolls.
    old_after = cert.not_valid_after_utc
    wait_until(
        lambda: (
            certificate(tls_secret(cluster, namespace, "web-tls")).serial_number
            != cert.serial_number
        ),
        20,
        "a renewed certificate",
    )
    renewed_at = datetime.datetime.now(datetime.UTC)
    assert renewed_at < old_after, "renewed only after the old certificate expired"
    new = certificate(tls_secret(cluster, namespace, "web-tls"))
    assert new.not_valid_after_utc > old_after
    wait_until(lambda: pod_hash(cluster, namespace, "web") not in (None, first_hash), 20,
               "the consumer's pod template to carry the new HMAC")  # fmt: skip
    sb = get(cluster, SB, namespace, "web-tls")
    assert sb is not None
    wait_until(
        lambda: (
            (get(cluster, SB, namespace, "web-tls") or {})["status"]["certificate"]["serial"]
            == serial_of(new)
        ),
        10,
        "status to show the new serial",
    )
    # One request to OpenBao per renewal, counted at its audit device.
    assert issues(stores, namespace) == 2
    reasons = [e["reason"] for e in events_for(cluster, namespace, "web-tls")]
    assert "Issued" in reasons and "Renewed" in reasons


def test_restart_with_status_lost_keeps_the_certificate_in_the_secret(
    cluster: Cluster, stores: Stores, operator: Operator, pki: str, namespace: str
) -> None:
    """The Secret is the truth: a restarted operator that finds no status reads notAfter
    from tls.crt and issues nothing (counted at OpenBao)."""
    pki_role(stores.bao, f"{namespace}-web", [f"{namespace}.svc"])
    apply(cluster, pki_binding(namespace, "tls", ttl="1h"))
    wait_condition(cluster, SB, namespace, "tls", "Ready", "True")
    before = tls_secret(cluster, namespace, "tls")
    assert issues(stores, namespace) == 1
    operator.stop()
    try:
        cluster.kubectl("-n", namespace, "patch", SB, "tls", "--subresource=status",
                        "--type=merge", "-p", '{"status": null}')  # fmt: skip
    finally:
        operator.start()
    sb = wait_condition(cluster, SB, namespace, "tls", "Ready", "True")
    assert sb["status"]["certificate"]["serial"] == serial_of(certificate(before))
    assert tls_secret(cluster, namespace, "tls") == before
    assert issues(stores, namespace) == 1


def test_scoping_refuses_before_any_backend_call_and_revoke_on_delete(
    cluster: Cluster, stores: Stores, pki: str, namespace: str
) -> None:
    """A role outside the namespace's keyPrefix, and a namespace the store does not allow,
    are refused with no request to OpenBao (its audit log); an allowed binding with
    revokeOnDelete has its certificate revoked when deleted (OpenBao's CRL entry)."""
    other = f"other-{namespace}-web"
    pki_role(stores.bao, other, [f"{namespace}.svc"])
    apply(cluster, pki_binding(namespace, "outside", role=other))
    sb = wait_condition(cluster, SB, namespace, "outside", "Synced", "False", "Forbidden")
    assert f"{PKI_MOUNT}/issue/{namespace}-" in condition(sb, "Synced")["message"]
    apply(cluster, pki_binding(namespace, "guarded", store="vault-guarded"))
    wait_condition(cluster, SB, namespace, "guarded", "Synced", "False", "Forbidden")
    # A store that cannot issue at all (AWS), though the path is within its keyPrefix.
    aws = {**stores.config["secretStores"]["aws-sm"], "keyPrefix": "pki/"}
    stores.config["secretStores"]["aws-pki"] = aws
    stores.write()
    time.sleep(2)  # the operator re-reads its configuration every second
    apply(cluster, pki_binding(namespace, "aws", store="aws-pki"))
    sb = wait_condition(cluster, SB, namespace, "aws", "Synced", "False", "Forbidden")
    assert "need a vault store" in condition(sb, "Synced")["message"]

    pki_role(stores.bao, f"{namespace}-web", [f"{namespace}.svc"])
    apply(cluster, pki_binding(namespace, "revoked", ttl="1h", revokeOnDelete=True))
    sb = wait_condition(cluster, SB, namespace, "revoked", "Ready", "True")
    serial = sb["status"]["certificate"]["serial"]
    assert "appinfra.dev/revoke" in sb["metadata"]["finalizers"]
    time.sleep(2)  # time for a (wrong) late request for the refused bindings
    paths = {r.path for r in bao_requests(stores.bao_audit_log, prefix=f"{PKI_MOUNT}/issue/")}
    assert f"{PKI_MOUNT}/issue/{other}" not in paths
    assert f"{PKI_MOUNT}/issue/{namespace}-web" in paths  # the control
    assert get(cluster, "secret", namespace, "outside") is None

    cluster.kubectl("-n", namespace, "delete", SB, "revoked", "--wait=true", "--timeout=60s")
    wait_gone(cluster, SB, namespace, "revoked")
    revoked = stores.bao.read(f"{PKI_MOUNT}/cert/{serial}")
    assert revoked["data"]["revocation_time"] > 0
    assert "Revoked" in {e["reason"] for e in events_for(cluster, namespace, "revoked")}


def test_uninstall_drops_the_revoke_finalizer_so_deletion_completes(
    cluster: Cluster, stores: Stores, operator: Operator, pki: str, namespace: str
) -> None:
    """With the operator gone nobody can revoke: `appinfra uninstall` lets go (the
    certificate runs out by itself) and says so, or the binding could never be deleted."""
    pki_role(stores.bao, f"{namespace}-web", [f"{namespace}.svc"])
    apply(cluster, pki_binding(namespace, "tls", ttl="1h", revokeOnDelete=True))
    sb = wait_condition(cluster, SB, namespace, "tls", "Ready", "True")
    assert "appinfra.dev/revoke" in sb["metadata"]["finalizers"]
    operator.stop()
    try:
        proc = subprocess.run(
            [tool("appinfra"), "uninstall", "--namespace", namespace],
            capture_output=True, text=True, timeout=60,
            env={"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert f"SecretBinding {namespace}/tls (not revoked)" in proc.stdout
        cluster.kubectl("-n", namespace, "delete", SB, "tls", "--wait=true", "--timeout=30s")
        assert get(cluster, SB, namespace, "tls") is None
    finally:
        operator.start()


def test_webhook_model_rejects_bad_combinations(cluster: Cluster, pki: str, namespace: str) -> None:
    """The CRD's rules: one source, no Merge, no template data for pki (cheap, before any
    reconcile), bounded lists."""
    both = pki_binding(namespace, "both")
    both["spec"]["data"] = [{"secretKey": "X", "remoteRef": {"key": f"{namespace}/x"}}]
    merge = pki_binding(namespace, "merge")
    merge["spec"]["target"] = {"creationPolicy": "Merge"}
    many = pki_binding(namespace, "many", altNames=[f"a{i}.{namespace}.svc" for i in range(33)])
    short = pki_binding(namespace, "short", ttl="1s")
    for doc, expected in [
        (both, "only one"),
        (merge, "creationPolicy"),
        (many, "33"),
        (short, "between 5s"),
    ]:
        out = apply(cluster, doc, check=False)
        assert expected in out, out
        assert get(cluster, SB, namespace, doc["metadata"]["name"]) is None


def test_no_key_material_in_events_or_operator_log(
    cluster: Cluster, stores: Stores, operator: Operator, pki: str, namespace: str
) -> None:
    pki_role(stores.bao, f"{namespace}-web", [f"{namespace}.svc"])
    apply(cluster, pki_binding(namespace, "quiet", ttl="1h"))
    wait_condition(cluster, SB, namespace, "quiet", "Ready", "True")
    key = tls_secret(cluster, namespace, "quiet")["tls.key"]
    body = key.splitlines()[1]  # a line of the key's base64
    events = json.dumps(events_for(cluster, namespace, "quiet"))
    log = operator.process.log_path.read_text(errors="replace")
    for where in (events, log, json.dumps(get(cluster, SB, namespace, "quiet"))):
        assert body not in where and "PRIVATE KEY" not in where and CANARY not in where
