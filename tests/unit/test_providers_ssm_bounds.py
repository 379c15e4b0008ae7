"""SSM path listing is bounded: past MAX_PATH_KEYS parameters or MAX_PATH_PAGES pages it
stops with a value-free Forbidden instead of reading (and holding) without end.

The paging loop is driven by synthetic GetParametersByPath pages (no AWS, no moto):
tests/e2e/test_providers_aws.py covers the real API shape against moto.
"""

from __future__ import annotations

from typing import Any

import pytest

from appinfra.api.operatorconfig import AwsStore
from appinfra.providers import Forbidden
from appinfra.providers.aws import MAX_PATH_KEYS, MAX_PATH_PAGES, PAGE_SIZE, ParameterStoreProvider
from tests.unit.test_providers_shared import no_kube


class Paged(ParameterStoreProvider):
    """A Parameter Store whose path listing answers from `pages` (endless if asked)."""

    def __init__(self, total: int | None, per_page: int = PAGE_SIZE) -> None:
        aws = AwsStore(service="ParameterStore", region="eu-west-1")
        super().__init__("ssm", aws, no_kube, "/{namespace}/")
        self.total, self.per_page, self.requests = total, per_page, 0

    def _page(self, path: str, token: str | None) -> Any:
        self.requests += 1
        start = int(token or 0)
        end = (
            start + self.per_page if self.total is None else min(start + self.per_page, self.total)
        )
        page: dict[str, Any] = {
            "Parameters": [
                {"Name": f"{path}/p{i}", "Value": f"secret-value-{i}"} for i in range(start, end)
            ]
        }
        if self.total is None or end < self.total:
            page["NextToken"] = str(end)
        return page


def test_exactly_the_limit_is_read() -> None:
    store = Paged(MAX_PATH_KEYS)
    secret = store.fetch("/shop/app/", version=None, namespace="shop", path_prefix=True)
    assert secret.properties is not None and len(secret.properties) == MAX_PATH_KEYS


def test_more_keys_than_a_binding_may_sync_are_refused_without_values() -> None:
    store = Paged(5000)
    with pytest.raises(Forbidden) as refused:
        store.fetch("/shop/app/", version=None, namespace="shop", path_prefix=True)
    message = str(refused.value)
    assert "more than 1,024 parameters under path '/shop/app'" in message
    assert "secret-value" not in message
    assert store.requests == MAX_PATH_KEYS // PAGE_SIZE + 1  # stopped, not read to the end


def test_endless_short_pages_stop_after_the_page_cap() -> None:
    store = Paged(None, per_page=0)  # empty pages, each with a NextToken
    with pytest.raises(Forbidden, match=f"did not end within {MAX_PATH_PAGES} pages"):
        store.fetch("/shop/app/", version=None, namespace="shop", path_prefix=True)
    assert store.requests == MAX_PATH_PAGES
