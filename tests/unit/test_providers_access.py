"""A store's allowedNamespaces and keyPrefix, checked before any backend call."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appinfra.api.operatorconfig import OperatorConfig, SecretStore
from appinfra.providers import Forbidden, Providers, UnknownStore
from appinfra.providers.access import access_problem
from tests.unit.test_providers_shared import Counting, config_with, no_kube


def store(allowed: list[str], prefix: str = "{namespace}/") -> SecretStore:
    return SecretStore.model_validate(
        {
            "aws": {"service": "SecretsManager", "region": "eu-west-1"},
            "allowedNamespaces": allowed,
            "keyPrefix": prefix,
        }
    )


def test_empty_allowed_namespaces_allows_none() -> None:
    problem = access_problem("aws-main", store([]), "shop", "shop/db")
    assert problem is not None
    assert "allows no namespaces" in problem
    assert "aws-main" in problem


@pytest.mark.parametrize(
    ("namespace", "allowed"),
    [("shop", True), ("team-a", True), ("team-", True), ("teamx", False), ("shop2", False)],
)
def test_namespace_globs(namespace: str, allowed: bool) -> None:
    problem = access_problem("s", store(["shop", "team-*"]), namespace, f"{namespace}/db")
    assert (problem is None) is allowed
    if not allowed:
        assert problem is not None
        assert "allowedNamespaces: shop, team-*" in problem
        assert repr(namespace) in problem


@pytest.mark.parametrize(
    ("prefix", "key", "allowed"),
    [
        ("{namespace}/", "shop/db", True),
        ("{namespace}/", "shopping/db", False),
        ("{namespace}/", "other/db", False),
        ("{namespace}/", "/shop/db", False),
        ("/apps/{namespace}/", "/apps/shop/db", True),
        ("/apps/{namespace}/", "/apps/other/db", False),
        ("shared/", "shared/db", True),
        ("", "anything/at/all", True),
    ],
)
def test_key_prefix_with_namespace(prefix: str, key: str, allowed: bool) -> None:
    problem = access_problem("s", store(["*"], prefix), "shop", key)
    assert (problem is None) is allowed
    if not allowed:
        assert problem is not None
        assert repr(prefix.replace("{namespace}", "shop")) in problem


@pytest.mark.parametrize(
    "key",
    ["shop/../other/db", "shop/./db", "shop/..", "shop/%2e%2e/other", "shop/db?x", "shop/a#b"],
)
def test_keys_that_could_escape_the_prefix_are_refused(key: str) -> None:
    assert access_problem("s", store(["*"]), "shop", key) is not None


names = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
globs = st.lists(st.from_regex(r"[a-z*][a-z0-9*-]{0,6}", fullmatch=True), max_size=3)
keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz/._-", max_size=30)


@given(globs, names, st.sampled_from(["{namespace}/", "x/{namespace}/", "/{namespace}/", ""]), keys)
def test_allowed_only_when_every_rule_holds(
    allowed: list[str], namespace: str, prefix: str, key: str
) -> None:
    problem = access_problem("s", store(allowed, prefix), namespace, key)
    rules_hold = (
        any(fnmatch.fnmatchcase(namespace, glob) for glob in allowed)
        and key.startswith(prefix.replace("{namespace}", namespace))
        and not {".", ".."} & set(key.split("/"))
    )
    assert (problem is None) is rules_hold


def test_providers_refuse_before_any_backend_call() -> None:
    fake = Counting()
    providers = Providers(config_with("vault-main", ["shop"]), no_kube, build=lambda *_: fake)
    for namespace, key in [("other", "other/db"), ("shop", "other/db")]:
        with pytest.raises(Forbidden) as refused:
            providers.fetch("vault-main", key, version=None, namespace=namespace)
        assert refused.value.reason == "Forbidden"
        assert str(refused.value) == providers.check_access("vault-main", namespace, key)
    assert fake.calls == []
    assert providers.check_access("vault-main", "shop", "shop/db") is None
    providers.fetch("vault-main", "shop/db", version=None, namespace="shop")
    assert len(fake.calls) == 1


def test_unknown_store_names_the_configured_ones() -> None:
    providers = Providers(config_with("vault-main", ["shop"]), no_kube, build=lambda *_: Counting())
    with pytest.raises(UnknownStore) as unknown:
        providers.fetch("vault-typo", "shop/db", version=None, namespace="shop")
    assert "vault-typo" in str(unknown.value)
    assert "vault-main" in str(unknown.value)
    with pytest.raises(UnknownStore):
        providers.check_access("vault-typo", "shop", "shop/db")
    assert Providers(OperatorConfig(), no_kube).store_names() == []
