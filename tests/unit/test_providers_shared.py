"""Shared reads through `Providers`: one backend call per distinct read per window.

The provider here is a fake of our own Provider interface (it counts calls); the real
backends are exercised in tests/e2e/test_providers_*.py.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from appinfra.api.operatorconfig import OperatorConfig
from appinfra.providers import (
    BackendUnavailable,
    Kube,
    Providers,
    RemoteSecret,
    SecretNotFound,
    UnknownStore,
)
from tests.support.clock import Clock


def _unused(*_: object) -> str:
    raise AssertionError("the fake provider never asks the cluster")


no_kube = Kube(token_for=_unused, read_secret_key=_unused)


def config_with(
    name: str, allowed: list[str], region: str = "eu-west-1", prefix: str = "{namespace}/"
) -> OperatorConfig:
    return OperatorConfig.model_validate(
        {
            "secretStores": {
                name: {
                    "aws": {"service": "SecretsManager", "region": region},
                    "allowedNamespaces": allowed,
                    "keyPrefix": prefix,
                }
            }
        }
    )


class Counting:
    """A Provider that records its calls; optionally holds them or fails them."""

    def __init__(self, per_namespace: bool = False) -> None:
        self.calls: list[tuple[str, str | None, str, bool]] = []
        self.per_namespace = per_namespace
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.fail: Exception | None = None
        self.problems: list[str] = []
        self.closed = False
        self._lock = threading.Lock()

    def fetch(
        self, key: str, *, version: str | None, namespace: str, path_prefix: bool = False
    ) -> RemoteSecret:
        with self._lock:
            self.calls.append((key, version, namespace, path_prefix))
            number = len(self.calls)
        self.entered.set()
        self.release.wait(10)
        if self.fail is not None:
            raise self.fail
        return RemoteSecret({"call": number}, None, str(number))

    def identity(self, namespace: str) -> str:
        return namespace if self.per_namespace else ""

    def validate(self) -> list[str]:
        return self.problems

    def close(self) -> None:
        self.closed = True


def providers_with(fake: Counting, clock: Clock, window: float = 60.0) -> Providers:
    return Providers(
        config_with("s", ["*"]), no_kube, window=window, clock=clock, build=lambda *_: fake
    )


def test_identical_reads_within_the_window_make_one_call() -> None:
    fake, clock = Counting(), Clock()
    providers = providers_with(fake, clock)
    first = providers.fetch("s", "a/db", version=None, namespace="a")
    clock.now += 59.9
    assert providers.fetch("s", "a/db", version=None, namespace="a") is first
    assert len(fake.calls) == 1
    clock.now += 0.1
    again = providers.fetch("s", "a/db", version=None, namespace="a")
    assert again.version == "2"
    assert len(fake.calls) == 2


def test_reads_differing_in_key_version_or_path_are_separate() -> None:
    fake, clock = Counting(), Clock()
    providers = providers_with(fake, clock)
    for key, version, path_prefix in [
        ("a/db", None, False),
        ("a/db", "3", False),
        ("a/db", None, True),
        ("a/api", None, False),
    ]:
        providers.fetch("s", key, version=version, namespace="a", path_prefix=path_prefix)
        providers.fetch("s", key, version=version, namespace="a", path_prefix=path_prefix)
    assert fake.calls == [
        ("a/db", None, "a", False),
        ("a/db", "3", "a", False),
        ("a/db", None, "a", True),
        ("a/api", None, "a", False),
    ]


def test_version_zero_is_the_latest() -> None:
    fake, clock = Counting(), Clock()
    providers = providers_with(fake, clock)
    providers.fetch("s", "a/db", version="0", namespace="a")
    providers.fetch("s", "a/db", version=None, namespace="a")
    assert fake.calls == [("a/db", None, "a", False)]


@pytest.mark.parametrize(("per_namespace", "calls"), [(False, 1), (True, 2)])
def test_reads_are_shared_across_namespaces_only_for_one_identity(
    per_namespace: bool, calls: int
) -> None:
    fake = Counting(per_namespace)
    config = config_with("s", ["*"], prefix="shared/")
    providers = Providers(config, no_kube, clock=Clock(), build=lambda *_: fake)
    providers.fetch("s", "shared/db", version=None, namespace="a")
    providers.fetch("s", "shared/db", version=None, namespace="b")
    assert len(fake.calls) == calls


def test_concurrent_identical_reads_wait_for_the_one_in_flight() -> None:
    fake, clock = Counting(), Clock()
    providers = providers_with(fake, clock)
    fake.release.clear()
    start = threading.Barrier(20)

    def read(_: int) -> RemoteSecret:
        start.wait()
        return providers.fetch("s", "a/db", version=None, namespace="a")

    with ThreadPoolExecutor(20) as pool:
        results = pool.map(read, range(20))
        assert fake.entered.wait(5)
        time.sleep(0.2)  # the other 19 are now queued behind the first
        fake.release.set()
        values = list(results)
    assert len(fake.calls) == 1
    assert all(value is values[0] for value in values)


def test_errors_are_shared_in_flight_but_not_kept() -> None:
    fake, clock = Counting(), Clock()
    providers = providers_with(fake, clock)
    fake.fail = BackendUnavailable("store 's' is down")
    fake.release.clear()
    start = threading.Barrier(10)

    def read(_: int) -> BaseException | None:
        start.wait()
        try:
            providers.fetch("s", "a/db", version=None, namespace="a")
        except BackendUnavailable as exc:
            return exc
        return None

    with ThreadPoolExecutor(10) as pool:
        outcomes = pool.map(read, range(10))
        assert fake.entered.wait(5)
        time.sleep(0.2)
        fake.release.set()
        errors = list(outcomes)
    assert len(fake.calls) == 1
    assert all(isinstance(error, BackendUnavailable) for error in errors)
    assert all(str(error) == "store 's' is down" for error in errors)

    # Same instant, after the failure: the next reader asks the backend again.
    fake.fail = None
    assert providers.fetch("s", "a/db", version=None, namespace="a").version == "2"
    assert len(fake.calls) == 2


def test_a_not_found_is_not_cached_either() -> None:
    fake, clock = Counting(), Clock()
    providers = providers_with(fake, clock)
    fake.fail = SecretNotFound("nothing at a/db")
    for _ in range(3):
        with pytest.raises(SecretNotFound):
            providers.fetch("s", "a/db", version=None, namespace="a")
    assert len(fake.calls) == 3


def test_update_swaps_changed_stores_and_closes_the_old_providers() -> None:
    built: list[Counting] = []

    def build(*_: object) -> Counting:
        built.append(Counting())
        return built[-1]

    clock = Clock()
    providers = Providers(config_with("s", ["*"]), no_kube, clock=clock, build=build)
    providers.fetch("s", "a/db", version=None, namespace="a")

    providers.update(config_with("s", ["*"]))  # unchanged: same provider, cache kept
    providers.fetch("s", "a/db", version=None, namespace="a")
    assert len(built) == 1
    assert not built[0].closed
    assert len(built[0].calls) == 1

    providers.update(config_with("s", ["*"], region="us-east-1"))  # changed: rebuilt
    assert built[0].closed
    providers.fetch("s", "a/db", version=None, namespace="a")
    assert len(built) == 2
    assert len(built[1].calls) == 1  # not served from the old store's result

    providers.update(OperatorConfig())
    assert built[1].closed
    assert providers.store_names() == []
    with pytest.raises(UnknownStore):
        providers.fetch("s", "a/db", version=None, namespace="a")


def test_configuration_problems_of_new_stores_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = Counting()
    fake.problems = ["aws.region 'Ireland' is not an AWS region name like eu-west-1"]
    with caplog.at_level(logging.WARNING, logger="appinfra.providers"):
        providers = Providers(config_with("s", ["*"]), no_kube, build=lambda *_: fake)
        providers.update(config_with("s", ["*"]))  # unchanged: not validated again
    assert [r.getMessage() for r in caplog.records] == [f"secret store s: {fake.problems[0]}"]


def test_old_results_are_swept() -> None:
    fake, clock = Counting(), Clock()
    providers = providers_with(fake, clock, window=10)
    for number in range(100):
        providers.fetch("s", f"a/{number}", version=None, namespace="a")
    clock.now += 10
    providers.fetch("s", "a/new", version=None, namespace="a")
    assert len(providers._shared._flights) == 1


def test_store_names_are_sorted() -> None:
    config = OperatorConfig.model_validate(
        {
            "secretStores": {
                name: {
                    "aws": {"service": "ParameterStore", "region": "eu-west-1"},
                    "allowedNamespaces": ["*"],
                }
                for name in ("zeta", "alpha", "mid")
            }
        }
    )
    assert Providers(config, no_kube, build=lambda *_: Counting()).store_names() == [
        "alpha",
        "mid",
        "zeta",
    ]
