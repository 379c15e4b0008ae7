"""A SecretBinding never renders a Secret with more keys than its status can list: the
render refuses it (before any write) with an ExtractError the handler already maps to a
failed sync, and the message names counts and fields, never values."""

from __future__ import annotations

from typing import Any

import pytest

from appinfra.api.secretbinding import MAX_SYNCED_KEYS, SecretBindingStatus
from appinfra.api.secretbinding import SecretBindingSpec as Spec
from appinfra.providers.base import RemoteSecret
from appinfra.render.secretbinding import ExtractError, Fetch, TooManyKeys, secret_data
from appinfra.render.templates import TemplateError


def _spec(**fields: Any) -> Spec:
    return Spec.model_validate({"store": "vault", **fields})


def _remote(count: int, prefix: str = "k") -> RemoteSecret:
    return RemoteSecret({f"{prefix}{i}": f"value-{i}" for i in range(count)}, None, "1")


def test_1500_keys_from_one_remote_secret_are_refused() -> None:
    spec = _spec(dataFrom=[{"extract": {"key": "shop/big"}}])
    with pytest.raises(TooManyKeys) as refused:
        secret_data(spec, {Fetch("shop/big"): _remote(1500)})
    message = str(refused.value)
    assert "1,500 keys, more than the 1,024 a binding may sync; narrow dataFrom" in message
    assert message.startswith("spec.dataFrom[0].extract (shop/big)")
    assert "value-" not in message
    assert isinstance(refused.value, ExtractError)  # the handler's existing except clause


def test_keys_summed_over_several_extracts_are_refused() -> None:
    spec = _spec(dataFrom=[{"extract": {"key": "shop/a"}}, {"extract": {"key": "shop/b"}}])
    fetched = {Fetch("shop/a"): _remote(600, "a"), Fetch("shop/b"): _remote(600, "b")}
    with pytest.raises(TooManyKeys, match="1,200 keys"):
        secret_data(spec, fetched)


def test_template_keys_count_and_are_refused_before_rendering() -> None:
    # A template that would fail to render: the key count is checked first.
    template = {"data": {"extra": "{{ missing.attr.deeper }}"}}
    spec = _spec(dataFrom=[{"extract": {"key": "shop/a"}}], target={"template": template})
    with pytest.raises(TooManyKeys, match="1,025 keys"):
        secret_data(spec, {Fetch("shop/a"): _remote(MAX_SYNCED_KEYS)})


def test_exactly_1024_keys_sync_and_fit_in_status() -> None:
    spec = _spec(dataFrom=[{"extract": {"key": "shop/a"}}])
    data = secret_data(spec, {Fetch("shop/a"): _remote(MAX_SYNCED_KEYS)})
    assert len(data) == MAX_SYNCED_KEYS
    SecretBindingStatus.model_validate({"syncedKeys": sorted(data)})  # the status limit holds


def test_template_errors_are_still_template_errors() -> None:
    spec = _spec(
        data=[{"secretKey": "a", "remoteRef": {"key": "shop/a"}}],
        target={"template": {"data": {"b": "{{ 1 / 0 }}"}}},
    )
    with pytest.raises(TemplateError):
        secret_data(spec, {Fetch("shop/a"): RemoteSecret(None, b"x", "1")})
