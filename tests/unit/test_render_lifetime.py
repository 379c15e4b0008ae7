"""SecretBinding pki and dynamic, the pure parts: renewal times and their jitter, what the
Secret holds, what re-issues, the model's rules, and `appinfra render` of
examples/lifetime/ (placeholders, never a value)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from appinfra.api.secretbinding import SecretBindingSpec
from appinfra.render.lifetime import (
    IssuedDataError,
    dynamic_data,
    issued_for,
    jitter,
    pki_data,
    read_certificate,
    renewal_time,
)
from appinfra.render.offline import render_paths

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "lifetime"


def spec(**fields: Any) -> SecretBindingSpec:
    return SecretBindingSpec.model_validate({"store": "vault-pki", **fields})


PKI = {"mount": "pki", "role": "shop-web", "commonName": "web.shop.svc"}


@pytest.mark.parametrize("offset", [0.0, 0.5, 0.999])
def test_renewal_at_the_percentage_jittered_earlier_by_at_most_a_tenth(offset: float) -> None:
    at = renewal_time(1000.0, 1100.0, 67, None, offset)
    assert 1067.0 - 10.0 <= at <= 1067.0
    assert at == pytest.approx(1067.0 - offset * 10.0)


def test_renew_before_wins_when_shorter_than_the_lifetime() -> None:
    assert renewal_time(0.0, 3600.0, 67, 600.0, 0.0) == 3000.0
    # Longer than the lifetime (a role's max_ttl cut the certificate short): the percentage.
    assert renewal_time(0.0, 60.0, 50, 600.0, 0.0) == 30.0


def test_jitter_never_moves_a_renewal_before_half_of_what_was_asked() -> None:
    assert renewal_time(0.0, 100.0, 10, None, 0.999) >= 5.0


def test_jitter_is_per_binding_and_stable() -> None:
    one = jitter("shop", "web-tls", 1.0)
    assert one == jitter("shop", "web-tls", 1.0)
    assert one != jitter("shop", "api-tls", 1.0)
    assert 0.0 <= one < 1.0


def test_only_the_request_reissues() -> None:
    base = issued_for(spec(pki=PKI))
    assert issued_for(spec(pki={**PKI, "renewPercent": 50, "revokeOnDelete": True})) == base
    assert issued_for(spec(pki=PKI, targetRef={"kind": "Deployment", "name": "x"})) == base
    assert issued_for(spec(pki={**PKI, "altNames": ["a.shop.svc"]})) != base
    assert issued_for(spec(pki={**PKI, "ttl": "1h"})) != base


def test_pki_data_chain_and_ca() -> None:
    data = pki_data({"certificate": "LEAF", "private_key": "KEY", "issuing_ca": "ICA",
                     "ca_chain": ["ICA", "ROOT"]})  # fmt: skip
    assert data == {"tls.crt": "LEAF\nICA\nROOT\n", "tls.key": "KEY\n", "ca.crt": "ROOT\n"}
    with pytest.raises(IssuedDataError, match="private_key"):
        pki_data({"certificate": "LEAF", "issuing_ca": "ICA"})


def test_read_certificate_refuses_a_partial_or_mismatched_secret() -> None:
    assert read_certificate({}) is None
    assert read_certificate({"tls.crt": "x", "tls.key": "y", "ca.crt": "z"}) is None


def test_dynamic_data_keeps_the_lease_and_refuses_bad_keys() -> None:
    data = dynamic_data({"username": "u", "ttl": 5}, "database/creds/app/abc")
    assert data == {"username": "u", "ttl": "5", ".appinfra-lease-id": "database/creds/app/abc"}
    with pytest.raises(IssuedDataError, match="cannot be a Secret key"):
        dynamic_data({"bad key": "v"}, "l")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pki": PKI, "data": [{"secretKey": "X", "remoteRef": {"key": "k"}}]}, "only one"),
        ({"pki": PKI, "dynamic": {"path": "database/creds/x"}}, "only one"),
        ({"pki": PKI, "target": {"creationPolicy": "Merge"}}, "creationPolicy"),
        ({"pki": PKI, "target": {"type": "Opaque2"}}, "kubernetes.io/tls"),
        ({"pki": {**PKI, "ttl": "2s"}}, "between 5s"),
        ({"pki": {**PKI, "ipSANs": ["not-an-ip"]}}, "IP address"),
        ({"pki": {**PKI, "mount": "pki/../sys"}}, "Vault path"),
        ({"dynamic": {"path": "aws/sts/x", "parameters": {"ttl": "1h"}}}, "method: POST"),
        ({"dynamic": {"path": "database/creds/x", "renewPercent": 95}}, "less than or equal"),
        ({}, "set one source"),
    ],
)
def test_bad_combinations_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**fields)


def test_render_shows_the_secrets_shapes_with_marked_placeholders() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = render_paths([str(EXAMPLE / "10-orders.yaml")], str(EXAMPLE / "operator-config.yaml"),
                        out, err)  # fmt: skip
    assert code == 0, err.getvalue()
    secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all(out.getvalue())
               if d["kind"] == "Secret"}  # fmt: skip
    tls, db = secrets["orders-tls"], secrets["orders-db"]
    assert tls["type"] == "kubernetes.io/tls"
    assert sorted(tls["stringData"]) == ["ca.crt", "tls.crt", "tls.key"]
    assert tls["stringData"]["tls.key"] == (
        "<issued by vault-pki: pki/issue/shop-orders: the certificate's private key>")  # fmt: skip
    assert db["stringData"][".appinfra-lease-id"] == (
        "<lease id from vault-db: database/creds/shop-orders>")  # fmt: skip
    assert (
        db["stringData"]["password"] == "<issued by vault-db: database/creds/shop-orders#password>"
    )
    assert db["stringData"]["DSN"].startswith("postgresql://<issued by vault-db:")
    assert "issued anew at its max TTL" in err.getvalue()


def test_render_refuses_a_role_outside_the_key_prefix(tmp_path: Path) -> None:
    doc = (EXAMPLE / "10-orders.yaml").read_text().replace("role: shop-orders", "role: billing")
    path = tmp_path / "b.yaml"
    path.write_text(doc)
    out, err = io.StringIO(), io.StringIO()
    code = render_paths([str(path)], str(EXAMPLE / "operator-config.yaml"), out, err)
    assert code != 0
    assert "pki/issue/billing" in err.getvalue() and "pki/issue/shop-" in err.getvalue()
