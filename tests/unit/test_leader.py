"""Leader election under faults: a fake clock, a fake Lease store that fails on cue.

What must hold whatever the API connection does: the loop never ends on an error of
an attempt; a leader that cannot renew stops (write gate closed, on_stopped called)
before a standby may take the Lease; and if the loop ends anyway, the process is
told to stop.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import pytest
import urllib3

from appinfra.kube.client import Kube, KubeError
from appinfra.kube.writegate import WRITES, WriteGate
from appinfra.leader import LeaderElector, LeaseConfig, Outcome
from tests.support.clock import Clock

CFG = dict(namespace="ns", name="appinfra", identity="me")


def connection_errors() -> list[Exception]:
    """What urllib3 and the socket layer raise when the API connection is cut."""
    url = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/appinfra"
    refused = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return [
        urllib3.exceptions.MaxRetryError(None, url, refused),  # type: ignore[arg-type]
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
        urllib3.exceptions.ReadTimeoutError(None, url, "Read timed out."),  # type: ignore[arg-type]
        ConnectionResetError(104, "Connection reset by peer"),
        OSError(113, "No route to host"),
        TimeoutError("timed out"),
        ValueError("Expecting value: line 1 column 1 (char 0)"),  # a truncated body
        KeyError("spec"),
        KubeError(500, "InternalError", "etcdserver: request timed out"),
        KubeError(409, "Conflict", "the object has been modified"),
    ]


class FakeLeases:
    """One Lease in memory with resourceVersion checks, as the API server keeps it.
    `failures` are raised, one per request, before anything else happens."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.failures: list[Exception] = []
        self.fail_always: Exception | None = None
        self.puts: list[float] = []  # clock() of every Lease write that landed

    def _maybe_fail(self) -> None:
        if self.failures:
            raise self.failures.pop(0)
        if self.fail_always is not None:
            raise self.fail_always

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        self.puts.append(self.clock())
        return copy.deepcopy(self.lease)

    def get(self, res: Any, namespace: str, name: str) -> dict[str, Any] | None:
        self._maybe_fail()
        return copy.deepcopy(self.lease)

    def create(self, res: Any, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self._maybe_fail()
        if self.lease is not None:
            raise KubeError(409, "AlreadyExists", "leases already exists")
        return self._store(body)

    def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        self._maybe_fail()
        assert method == "PUT" and self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", "the object has been modified")
        return self._store(body)

    def held_by(self, holder: str) -> None:
        """Another replica renews the Lease now."""
        assert self.lease is not None
        self.lease["spec"].update({"holderIdentity": holder, "renewTime": f"t{self.clock()}"})
        self.version += 1
        self.lease["metadata"]["resourceVersion"] = str(self.version)


async def inline(fn: Callable[[], Outcome]) -> Outcome:
    return fn()


def fake_pause(clock: Clock) -> Callable[[asyncio.Future[Any] | None, float], Awaitable[None]]:
    """Lets the loop run once, then advances the fake clock by the whole wait unless
    the awaited attempt has completed (as asyncio.wait would return early)."""

    async def pause(fut: asyncio.Future[Any] | None, seconds: float) -> None:
        await asyncio.sleep(0)
        if fut is None or not fut.done():
            clock.now += seconds

    return pause


class Hooks:
    def __init__(self, elector_ref: list[LeaderElector], clock: Clock) -> None:
        self.ref = elector_ref
        self.clock = clock
        self.started = asyncio.Event()
        self.stopped_at: list[float] = []
        self.gate_open_when_stopped: list[bool] = []

    async def on_started(self) -> None:
        self.started.set()

    async def on_stopped(self) -> None:
        self.stopped_at.append(self.clock())
        self.gate_open_when_stopped.append(self.ref[0].gate.is_open)


def make(clock: Clock, leases: FakeLeases, **kwargs: Any) -> tuple[LeaderElector, Hooks, WriteGate]:
    gate = WriteGate()
    if kwargs.pop("threaded", False) is False:
        kwargs.setdefault("blocking", inline)
    elector = LeaderElector(
        cast(Kube, leases), LeaseConfig(**CFG), clock, gate=gate, pause=fake_pause(clock), **kwargs
    )
    return elector, Hooks([elector], clock), gate


async def bounded(aw: Awaitable[Any], seconds: float = 10) -> Any:
    """Real-time guard: the fake clock makes every wait instant, so a hang is a bug."""
    return await asyncio.wait_for(aw, seconds)


def setup(**kwargs: Any) -> tuple[Clock, FakeLeases, LeaderElector, Hooks, WriteGate]:
    """Every scenario's start: a fake clock, a fake Lease store on it, an elector on both."""
    clock = Clock()
    leases = FakeLeases(clock)
    return (clock, leases, *make(clock, leases, **kwargs))


async def elected(elector: LeaderElector, hooks: Hooks) -> asyncio.Task[None]:
    """The elector's loop, started, once it has taken the Lease."""
    task = asyncio.create_task(elector.run(hooks.on_started, hooks.on_stopped))
    await bounded(hooks.started.wait())
    return task


@pytest.fixture(autouse=True)
def open_gate() -> Iterator[None]:
    WRITES.open()
    yield
    WRITES.open()


def test_every_error_kind_is_logged_counted_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        clock = Clock()
        leases = FakeLeases(clock)
        errors = connection_errors()
        leases.failures = list(errors)
        elector, hooks, gate = make(clock, leases)
        task = asyncio.create_task(elector.run(hooks.on_started, hooks.on_stopped))
        await asyncio.sleep(0)
        assert not gate.is_open  # closed until elected
        await bounded(hooks.started.wait())
        assert elector.leading and gate.is_open
        assert not task.done()  # still renewing
        assert sum(elector.errors.values()) == len(errors)
        expected = {type(e).__name__ for e in errors}
        assert set(elector.errors) == expected
        task.cancel()

    caplog.set_level(logging.WARNING, "appinfra.leader")
    asyncio.run(scenario())
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in ("MaxRetryError", "ProtocolError", "ReadTimeoutError", "OSError", "ValueError"):
        assert any(f"({name})" in m for m in warned), name


def test_in_threads_on_the_real_clock() -> None:
    """The production runner and clock: attempts in threads, waits on asyncio."""

    async def scenario() -> None:
        leases = FakeLeases(Clock())
        gate = WriteGate()
        cfg = LeaseConfig(**CFG, duration=3, renew_deadline=1, retry_period=0.05)
        elector = LeaderElector(cast(Kube, leases), cfg, gate=gate)
        hooks = Hooks([elector], cast(Clock, time.monotonic))
        leases.failures = connection_errors()
        task = await elected(elector, hooks)
        assert gate.is_open
        renewed = time.monotonic()
        leases.fail_always = urllib3.exceptions.ProtocolError("Connection aborted.")
        await bounded(task)
        # Generous bound for a loaded machine, still below the lease duration.
        assert hooks.stopped_at[0] - renewed < cfg.duration
        assert not gate.is_open

    asyncio.run(scenario())


@pytest.mark.parametrize("error", connection_errors(), ids=lambda e: type(e).__name__)
def test_leader_that_cannot_renew_stops_writing_before_the_lease_can_expire(
    error: Exception,
) -> None:
    async def scenario() -> None:
        _clock, leases, elector, hooks, gate = setup()
        task = await elected(elector, hooks)
        # A few good renews, then the connection is gone for good.
        while len(leases.puts) < 4:
            await asyncio.sleep(0)
        leases.fail_always = error
        await bounded(task)  # run returns after stepping down, it does not raise
        last_renew = leases.puts[-1]  # when the standby last saw the record change
        assert len(hooks.stopped_at) == 1
        stopped = hooks.stopped_at[0]
        # Stopped no later than the renew deadline after the renew that landed last,
        # so well before a standby may take the Lease (a duration after it saw it).
        assert stopped - last_renew <= elector.cfg.renew_deadline < elector.cfg.duration
        assert hooks.gate_open_when_stopped == [False]  # writes refused before on_stopped
        assert not gate.is_open and not elector.leading
        assert elector.errors[type(error).__name__] >= 1

    asyncio.run(scenario())


def test_slow_attempts_count_from_when_the_last_good_renew_started() -> None:
    """Each request takes 3 s: the deadline runs from the start of the last renew that
    succeeded, not from when its response came back."""

    async def scenario() -> None:
        clock = Clock()
        leases = FakeLeases(clock)
        starts: list[float] = []
        real_get = leases.get

        def slow_get(res: Any, namespace: str, name: str) -> dict[str, Any] | None:
            starts.append(clock())
            out = real_get(res, namespace, name)
            clock.now += 3  # the GET and the PUT each take 3 s
            return out

        leases.get = slow_get  # type: ignore[method-assign]
        real_request = leases.request

        def slow_request(method: str, path: str, **kw: Any) -> Any:
            out = real_request(method, path, **kw)
            clock.now += 3
            return out

        leases.request = slow_request  # type: ignore[method-assign]
        elector, hooks, _gate = make(clock, leases)
        task = await elected(elector, hooks)
        good = len(starts)
        leases.fail_always = urllib3.exceptions.ProtocolError("Connection aborted.")
        await bounded(task)
        assert hooks.stopped_at[0] == pytest.approx(starts[good - 1] + elector.cfg.renew_deadline)

    asyncio.run(scenario())


def test_a_hanging_attempt_cannot_keep_a_leader_past_the_deadline() -> None:
    """A request that never returns (a black-holed connection): the deadline is checked
    while the attempt waits, not after it."""

    async def scenario() -> None:
        clock = Clock()
        leases = FakeLeases(clock)
        hang = asyncio.Event()
        never = asyncio.Event()

        async def blocking(fn: Callable[[], Outcome]) -> Outcome:
            if hang.is_set():
                await never.wait()
            return fn()

        elector, hooks, _gate = make(clock, leases, blocking=blocking)
        task = await elected(elector, hooks)
        renewed = leases.puts[-1]
        hang.set()
        await bounded(task)
        assert hooks.stopped_at[0] - renewed <= elector.cfg.renew_deadline
        assert hooks.gate_open_when_stopped == [False]

    asyncio.run(scenario())


def test_another_holder_ends_leadership_at_once() -> None:
    async def scenario() -> None:
        clock, leases, elector, hooks, gate = setup()
        task = await elected(elector, hooks)
        took_over = clock()
        leases.held_by("other")
        await bounded(task)
        assert hooks.stopped_at[0] - took_over <= elector.cfg.retry_period
        assert not gate.is_open

    asyncio.run(scenario())


def test_a_standby_keeps_the_gate_closed_and_takes_over_only_after_expiry() -> None:
    async def scenario() -> None:
        clock = Clock()
        leases = FakeLeases(clock)
        other, _, _ = make(clock, leases)
        assert other.try_acquire_or_renew() == "ours"
        leases.lease["spec"]["holderIdentity"] = "other"  # type: ignore[index]
        elector, hooks, gate = make(clock, leases)
        seen = clock()
        task = await elected(elector, hooks)
        assert clock() - seen > elector.cfg.duration  # the unrenewed record expired first
        assert gate.is_open
        task.cancel()

    asyncio.run(scenario())


def test_the_process_is_told_to_stop_when_the_elector_fails() -> None:
    async def scenario() -> None:
        _clock, _leases, elector, hooks, gate = setup()
        ended: list[bool] = []

        async def broken_start() -> None:
            raise RuntimeError("a bug in on_started")

        task = elector.start(broken_start, hooks.on_stopped, lambda: ended.append(True))
        with pytest.raises(RuntimeError):
            await bounded(task)
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration
        assert ended == [True] and not gate.is_open and not elector.leading

    asyncio.run(scenario())


def test_cancelling_the_elector_stops_the_process_unless_shutting_down() -> None:
    async def scenario(shutting_down: bool) -> list[bool]:
        _clock, _leases, elector, hooks, _gate = setup()
        ended: list[bool] = []
        task = elector.start(hooks.on_started, hooks.on_stopped, lambda: ended.append(True))
        await bounded(hooks.started.wait())
        elector.shutting_down = shutting_down
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        return ended

    assert asyncio.run(scenario(False)) == [True]
    assert asyncio.run(scenario(True)) == []


def test_losing_the_lease_is_an_expected_end() -> None:
    async def scenario() -> None:
        _clock, leases, elector, hooks, _gate = setup()
        ended: list[bool] = []
        task = elector.start(hooks.on_started, hooks.on_stopped, lambda: ended.append(True))
        await bounded(hooks.started.wait())
        leases.fail_always = OSError(111, "Connection refused")
        await bounded(task)
        await asyncio.sleep(0)
        assert len(hooks.stopped_at) == 1 and ended == []  # on_stopped did the stopping

    asyncio.run(scenario())


def test_lease_timing_must_leave_a_margin() -> None:
    with pytest.raises(ValueError):
        LeaseConfig(**CFG, duration=10, renew_deadline=10)
    with pytest.raises(ValueError):
        LeaseConfig(**CFG, renew_deadline=2, retry_period=2)
    assert LeaseConfig(**CFG).request_timeout < LeaseConfig(**CFG).renew_deadline


class _Sent(Exception):
    pass


def test_closed_gate_refuses_every_write_except_leases(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, str]] = []

    def send(self: Kube, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        sent.append((method, path))
        raise _Sent

    monkeypatch.setattr(Kube, "_send", send)
    kube = Kube(cast(Any, None))
    writes = [
        ("PATCH", "/api/v1/namespaces/a/configmaps/b"),
        ("POST", "/api/v1/namespaces/a/events"),
        ("PUT", "/apis/apps/v1/namespaces/a/deployments/b"),
        ("DELETE", "/apis/policy/v1/namespaces/a/poddisruptionbudgets/b"),
        ("POST", "/api/v1/namespaces/a/serviceaccounts/b/token"),
    ]
    WRITES.close("this replica does not hold the leader lease")
    for method, path in writes:
        with pytest.raises(KubeError) as refused:
            kube.request(method, path, body={})
        assert refused.value.reason == "NotLeader"
    assert sent == []  # nothing reached the wire
    for method, path in [
        ("GET", "/api/v1/namespaces/a/configmaps/b"),
        ("PUT", "/apis/coordination.k8s.io/v1/namespaces/a/leases/appinfra"),
        ("POST", "/apis/coordination.k8s.io/v1/namespaces/a/leases"),
    ]:
        with pytest.raises(_Sent):
            kube.request(method, path, body={})
    assert len(sent) == 3
    WRITES.open()
    for method, path in writes:
        with pytest.raises(_Sent):
            kube.request(method, path, body={})


def test_an_acquire_that_returns_after_the_deadline_does_not_start_the_workers() -> None:
    async def scenario() -> None:
        clock = Clock()
        leases = FakeLeases(clock)
        slow = [True]
        real_get = leases.get

        def get(res: Any, namespace: str, name: str) -> dict[str, Any] | None:
            out = real_get(res, namespace, name)
            if slow[0]:
                slow[0] = False
                clock.now += 11  # past the 10 s renew deadline
            return out

        leases.get = get  # type: ignore[method-assign]
        elector, hooks, gate = make(clock, leases)
        task = asyncio.create_task(elector.run(hooks.on_started, hooks.on_stopped))
        while not leases.puts:
            await asyncio.sleep(0)
        assert not elector.leading and not gate.is_open and not hooks.started.is_set()
        await bounded(hooks.started.wait())  # the next, timely renew counts
        assert gate.is_open
        task.cancel()

    asyncio.run(scenario())
