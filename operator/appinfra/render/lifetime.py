"""Secrets with a lifetime (SecretBinding pki and dynamic): the Secret's data from what the
store issued, what that data was issued for, and when to renew it. Pure.

The Secret is the truth about what is issued: a certificate's times and serial are read
from tls.crt itself (so a restarted operator, or one whose status was lost, renews on
the same schedule instead of issuing anew), a lease's id from the Secret's
LEASE_ID_KEY. Renewal times are jittered per binding by a hash of its name, so many
bindings issued at once do not renew at once, and the same in every operator process.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appinfra.api.formats import DATA_KEY, duration_seconds
from appinfra.api.names import LEASE_ID_KEY
from appinfra.api.secretbinding import PkiSource, SecretBindingSpec

JITTER = 0.1
"""A renewal comes up to this share of the lifetime earlier than asked, by binding."""
TLS_KEYS = ("tls.crt", "tls.key", "ca.crt")


class IssuedDataError(ValueError):
    """What the store returned cannot be written as this Secret (message names keys only)."""


def issued_for(spec: SecretBindingSpec) -> str:
    """Hash of what the request asks for; when it changes, the Secret's certificate or
    credentials are issued anew. How to renew or revoke does not count: changing those
    must not re-issue."""
    if spec.pki is not None:
        request: Any = spec.pki.model_dump(
            by_alias=True, exclude={"renew_before", "renew_percent", "revoke_on_delete"}
        )
    elif spec.dynamic is not None:
        request = spec.dynamic.model_dump(by_alias=True, include={"path", "method", "parameters"})
    else:
        request = None
    text = json.dumps([spec.store, request], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def pki_request(pki: PkiSource) -> dict[str, str]:
    """The parameters of <mount>/issue/<role>."""
    params = {"common_name": pki.common_name, "format": "pem"}
    if pki.alt_names:
        params["alt_names"] = ",".join(pki.alt_names)
    if pki.ip_sans:
        params["ip_sans"] = ",".join(pki.ip_sans)
    if pki.ttl:
        params["ttl"] = f"{int(duration_seconds(pki.ttl))}s"
    return params


def pki_data(issued: Mapping[str, Any]) -> dict[str, str]:
    """tls.crt (the certificate, then the chain up to the issuing CA), tls.key, ca.crt."""
    try:
        certificate = str(issued["certificate"]).strip()
        key = str(issued["private_key"]).strip()
        issuing_ca = str(issued["issuing_ca"]).strip()
    except KeyError as missing:
        raise IssuedDataError(f"the PKI response has no {missing.args[0]!r}") from None
    chain = [str(c).strip() for c in issued.get("ca_chain") or [issuing_ca]]
    return {
        "tls.crt": "\n".join([certificate, *chain]) + "\n",
        "tls.key": key + "\n",
        "ca.crt": chain[-1] + "\n",
    }


def dynamic_data(issued: Mapping[str, Any], lease_id: str) -> dict[str, str]:
    """Every field of the response's data as a key, and the lease id."""
    out: dict[str, str] = {}
    for name, value in issued.items():
        if not DATA_KEY.accepts(name) or name == LEASE_ID_KEY:
            raise IssuedDataError(f"the response's field {name!r} cannot be a Secret key")
        out[name] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    out[LEASE_ID_KEY] = lease_id
    return out


def lease_hash(lease_id: str) -> str:
    return hashlib.sha256(lease_id.encode()).hexdigest()


@dataclass(frozen=True)
class Certificate:
    """The public facts of the certificate in a Secret (epoch seconds)."""

    serial: str
    not_before: float
    not_after: float


def read_certificate(data: Mapping[str, str]) -> Certificate | None:
    """The certificate in a tls Secret's data, if it is whole: tls.crt parses, tls.key is the
    key of that certificate, ca.crt is there. None otherwise (so it is issued anew)."""
    if any(not data.get(key) for key in TLS_KEYS):
        return None
    try:
        cert = x509.load_pem_x509_certificate(data["tls.crt"].encode())
        key = serialization.load_pem_private_key(data["tls.key"].encode(), password=None)
    except (ValueError, TypeError):
        return None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        return None
    digits = f"{cert.serial_number:x}"
    digits = "0" * (len(digits) % 2) + digits
    serial = ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))  # as OpenBao shows it
    return Certificate(
        serial=serial,
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
    )


def jitter(namespace: str, name: str, span: float) -> float:
    """This binding's share of `span` in [0, span): stable across processes."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * span


def renewal_time(
    start: float, end: float, percent: int, renew_before: float | None, offset: float
) -> float:
    """When to renew something valid from `start` to `end`: `renew_before` ahead of the end
    (when shorter than the lifetime), else at `percent` of it; `offset` (this binding's
    jitter, in [0, 1)) moves it up to JITTER of the lifetime earlier, never before half of
    what was asked."""
    lifetime = max(0.0, end - start)
    if renew_before is not None and renew_before < lifetime:
        planned = end - renew_before
    else:
        planned = start + lifetime * percent / 100
    earlier = min(offset * JITTER * lifetime, (planned - start) / 2)
    return planned - earlier


def rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str | None) -> float | None:
    if not text:
        return None
    stamp = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    return stamp.replace(tzinfo=datetime.UTC).timestamp()
