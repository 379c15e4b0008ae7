"""Hostile templates: each must end as a TemplateError within a bounded time, with the
memory of this process and of its template workers bounded throughout, and no error
message may carry a value from the context.

A render runs in a daemon thread joined with a timeout, so a template that spins for
ever fails its test instead of hanging the suite; a sampler thread records the RSS of
this process and of its children (the template workers) while it runs, and the peak
RSS of this process is reset before each case (/proc/self/clear_refs) and read after.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appinfra.render import sandbox
from appinfra.render.templates import TemplateError, render_template
from tests.support.rss import PeakSampler, children, status_bytes

MIB = 1024 * 1024
DEADLINE = 60.0  # seconds: far above every budget, far below "for ever"
# This process renders nothing itself; what it may grow by is noise (pickles, threads).
OWN_GROWTH = 48 * MIB
# A worker: Python and Jinja2 (~25 MiB RSS, shared libraries included) plus its budget.
WORKER_RSS = (sandbox.MEMORY_MIB + 40) * MIB

HOSTILE = {
    # filters and methods with a size argument
    "center": "{{ 'a'|center(300000000) }}",
    "indent": "{{ ('a\\n' * 100000)|indent(100000) }}",
    "format-width": "{{ '%0999999999d'|format(1) }}",
    "percent-width": "{{ '%-999999999s' % 'a' }}",
    "str-format-width": "{{ '{:>999999999}'.format(1) }}",
    "ljust": "{{ 'a'.ljust(999999999) }}",
    "expandtabs": "{{ ('\\t' * 100000).expandtabs(100000) }}",
    "wordwrap": "{{ ('a ' * 100000)|wordwrap(1, wrapstring='x' * 100000) }}",
    "replace": "{{ ('a' * 1000000)|replace('a', 'a' * 1000000) }}",
    "join": "{{ (['a' * 1000000] * 1000000)|join }}",
    "batch": "{{ [1]|batch(999999999, 'x')|list }}",
    "tojson-indent": "{{ range(1000)|list|tojson(indent=100000000) }}",
    "lipsum": "{{ lipsum(n=10**7) }}",
    # doubling
    "tilde-doubling": "{% set ns = namespace(s='a') %}{% for i in range(64) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "plus-doubling": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
    "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
    "macro-doubling": "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}"
    "{{ s|length }}{% endif %}{% endmacro %}{{ d('a', 64) }}",
    "list-extend-doubling": "{% set l = [0] %}{% for i in range(64) %}{{ l.extend(l) or '' }}"
    "{% endfor %}{{ l|length }}",
    "int-squaring": "{% set ns = namespace(n=2**60) %}{% for i in range(40) %}"
    "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n > 0 }}",
    "block-doubling": "{% set ns = namespace(s='a') %}{% for i in range(64) %}"
    "{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = t %}{% endfor %}{{ ns.s|length }}",
    # CPU
    "nested-loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
    "{% endfor %}",
    "huge-range-loop": "{% for i in range(100000) %}{% set x = range(100000)|list %}{% endfor %}",
    "exponential-macro": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
    "{% endmacro %}{{ f(100) }}",
    "sum-of-lists": "{{ ([[0] * 100000] * 100000)|sum(start=[])|length }}",
    # memory, a kilobyte at a time: no guard applies, the worker's memory limit does
    "dict-filling": "{% set d = {} %}{% for i in range(100000) %}"
    "{{ d.update({i: ('x' * 1000) ~ i}) or '' }}{% endfor %}",
    # recursion and nesting
    "recursive-macro": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "deep-parentheses": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
    "deep-ifs": "{% if 1 %}" * 300 + "x" + "{% endif %}" * 300,
    "deep-fors": "{% for i in range(9) %}" * 30 + "x" + "{% endfor %}" * 30,
    "deep-lists": "{{ " + "[" * 5000 + "]" * 5000 + " }}",
    # output
    "output": "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
}


def _children() -> list[int]:
    """This process's template workers. Only those: in a whole-suite run the e2e
    session's servers (control plane, OpenBao, moto) are children of pytest too."""
    out = []
    for pid in children().get(os.getpid(), []):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:4] == [b"-P", b"-B", b"-c"]:
            out.append(pid)
    return out


def worker_rss() -> int:
    """The RSS of the largest template worker now."""
    return max((status_bytes(pid) for pid in _children()), default=0)


@pytest.fixture
def peak_rss() -> Iterator[None]:
    """Fails the test if this process's peak RSS grew by more than OWN_GROWTH."""
    render_template("warm", "{{ 1 }}", {})  # workers started before the baseline
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = status_bytes("self", "VmRSS")
    yield
    grown = status_bytes("self", "VmHWM") - before
    assert grown < OWN_GROWTH, f"the test process's peak RSS grew by {grown // MIB} MiB"


def render_bounded(name: str, source: str, context: dict[str, str]) -> BaseException | str:
    """Render in a daemon thread; the exception or output, or fail after DEADLINE."""
    result: list[BaseException | str] = []

    def run() -> None:
        try:
            result.append(render_template(name, source, context))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), f"{name} still rendering after {DEADLINE:g} s"
    return result[0]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_template_is_a_bounded_template_error(case: str, peak_rss: None) -> None:
    with PeakSampler(worker_rss, 0.01) as sampler:  # each worker's peak, every 10 ms
        outcome = render_bounded(f"config.files.{case}", HOSTILE[case], {"X": "x"})
    assert isinstance(outcome, TemplateError), repr(outcome)[:300]
    message = str(outcome)
    assert message.startswith(f"config.files.{case}"), message
    assert len(message) < 300 and "Traceback" not in message, message
    assert sampler.peak < WORKER_RSS, f"a worker reached {sampler.peak // MIB} MiB"
    # The pool is still usable for the next, normal, template.
    assert render_template("after", "ok {{ X }}", {"X": "1"}) == "ok 1"


def test_budgets_are_named_in_the_messages() -> None:
    cpu = render_bounded("loop", HOSTILE["nested-loops"], {})
    assert f"exceeded the CPU time budget of {sandbox.CPU_SECONDS:g} s" in str(cpu)
    memory = render_bounded("fill", HOSTILE["dict-filling"], {})
    assert f"exceeded the memory budget of {sandbox.MEMORY_MIB} MiB" in str(memory)
    size = render_bounded("center", HOSTILE["center"], {})
    assert "'center' would build more than" in str(size) and "line 1" in str(size)
    output = render_bounded("output", HOSTILE["output"], {})
    assert "renders to more than 1048576 characters" in str(output)


def test_a_worker_that_does_not_answer_is_killed_and_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The wall-clock timeout is what stops a C call the CPU timer cannot interrupt;
    # here it is made shorter than the worker's CPU budget so that it acts first.
    render_template("warm", "{{ 1 }}", {})
    monkeypatch.setattr(sandbox, "WALL_SECONDS", 0.3)
    # Which worker serves the render is the pool's choice (on a loaded machine it may be
    # one started for it): record the workers the pool kills instead of guessing.
    killed: list[int] = []
    stop = sandbox._Worker.stop

    def recording_stop(worker: sandbox._Worker, kill: bool) -> int | None:
        if kill:
            killed.append(worker.proc.pid)
        return stop(worker, kill)

    monkeypatch.setattr(sandbox._Worker, "stop", recording_stop)
    outcome = render_bounded("spin", HOSTILE["nested-loops"], {"FRESH": str(uuid.uuid4())})
    assert isinstance(outcome, TemplateError)
    assert "exceeded the CPU time budget" in str(outcome) and "stopped after" in str(outcome)
    monkeypatch.undo()
    assert render_template("after", "{{ 6 * 7 }}", {}) == "42"
    assert killed, "the worker that timed out was not stopped"
    assert not set(killed) & set(_children()), "the worker that timed out is still running"


CANARY = "s3cr3t-CANARY"
# Each of these, on the code before the sandbox, put the value of X into the message.
ECHOING = {
    "dict-key": "{{ {}[X] }}",
    "map-filter-name": "{{ [1]|map(X)|list }}",
    "select-test-name": "{{ [1]|select(X)|list }}",
    "attr-filter": "{{ X|attr(X) }}",
    "unsafe-attr": "{{ X|attr('_' ~ X) }}",
    "str-item": "{{ X[X] }}",
    "namespace-item": "{{ namespace()[X] }}",
    "format-field": "{{ ('{0[' ~ X ~ ']}').format({}) }}",
    "sort-attribute": "{{ [{}, {}]|sort(attribute=X) }}",
    "join-attribute": "{{ [{}]|join(attribute=X) }}",
    "int-default": "{{ (X|int(X))[X] }}",
    "range-argument": "{{ range(X) }}",
    "attribute-of-value": "{{ X.foo }}",
    "call-value": "{{ X() }}",
    "undefined-then-value": "{{ undefined_name ~ X }}",
    "undefined-name-from-value": "{{ dict(a=X)[X] }}",
    "percent-format": "{{ '%d' % X }}",
    "dictsort": "{{ {X: 1}|dictsort(by=X) }}",
}


@pytest.mark.parametrize("case", sorted(ECHOING))
def test_no_value_in_any_error_message(case: str) -> None:
    with pytest.raises(TemplateError) as err:
        render_template(f"spec.target.template.data.{case}", ECHOING[case], {"X": CANARY})
    message = str(err.value)
    assert CANARY not in message and "s3cr3t" not in message, message
    assert message.startswith(f"spec.target.template.data.{case}"), message
    assert "line 1" in message, message


def test_names_written_in_the_source_are_quoted() -> None:
    """What the template itself spells out is no secret and helps the author."""
    with pytest.raises(TemplateError, match=r"line 2: 'MISSING' is undefined"):
        render_template("t", "ok\n{{ MISSING }}", {})
    with pytest.raises(TemplateError, match=r"has no attribute or key 'porrt'"):
        render_template("t", "{{ db.porrt }}", {"db": {"port": "5432"}})


def test_renders_concurrently_from_many_threads() -> None:
    results: dict[int, str] = {}

    def run(i: int) -> None:
        for _ in range(20):
            results[i] = render_template("t", "{{ N }}-{{ N|int * 2 }}", {"N": str(i)})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert results == {i: f"{i}-{2 * i}" for i in range(16)}


def test_a_hostile_template_does_not_block_others_for_long() -> None:
    """While one worker spins on a loop, normal templates are served by the other."""
    spinning = threading.Thread(
        target=render_bounded,
        args=("spin", HOSTILE["nested-loops"], {"FRESH": str(uuid.uuid4())}),
        daemon=True,
    )
    spinning.start()
    time.sleep(0.2)
    for i in range(50):
        assert render_template("t", "{{ I }}", {"I": str(i)}) == str(i)
    assert spinning.is_alive(), "the normal renders waited for the hostile one"
    spinning.join(DEADLINE)


def test_a_render_that_ran_out_of_budget_is_not_run_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every resync asks again; rendering is deterministic, so the answer is known."""
    # On a loaded machine 5 s of wall clock may hold less than the 1 s of CPU the budget
    # allows; a wall-clock stop is (rightly) not remembered, so give the CPU timer room.
    monkeypatch.setattr(sandbox, "WALL_SECONDS", 60.0)
    pool = sandbox.WorkerPool(size=1)
    try:
        with pytest.raises(sandbox.SandboxError) as first:
            pool.render("loop", HOSTILE["nested-loops"], {"X": "1"})
        assert "exceeded the CPU time budget" in str(first.value)

        def no_worker(*args: object) -> str:
            raise AssertionError("rendered again")

        pool._render_on = no_worker  # type: ignore[method-assign]
        with pytest.raises(sandbox.SandboxError) as again:
            pool.render("loop", HOSTILE["nested-loops"], {"X": "1"})
        assert str(again.value) == str(first.value)
        with pytest.raises(AssertionError, match="rendered again"):  # another context
            pool.render("loop", HOSTILE["nested-loops"], {"X": "2"})
    finally:
        pool.close()


# --- fair turns between tenants ----------------------------------------------------------

SPIN = HOSTILE["nested-loops"]  # (the sandbox refuses a range over 100,000 items)


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"still not {what} after {DEADLINE:g} s"
        time.sleep(0.005)


def test_one_tenant_cannot_keep_another_waiting() -> None:
    """Tenant a renders more distinct spinning templates at once than there are
    workers; tenant b's normal render, asked for after them all, is served while they
    still run: before any of a's has ended (each takes the whole CPU budget)."""
    warm = [
        threading.Thread(target=render_template, args=("warm", "{{ 1 }}", {}),
                         kwargs={"tenant": f"warm{i}"})
        for i in range(sandbox.POOL_SIZE)
    ]  # fmt: skip
    for t in warm:
        t.start()
    for t in warm:
        t.join(DEADLINE)
    ended: dict[int, tuple[float, BaseException | str]] = {}

    def spin(i: int) -> None:
        try:
            outcome: BaseException | str = render_template(
                f"spin{i}", f"{{# {uuid.uuid4()} #}}" + SPIN, {}, tenant="a"
            )
        except BaseException as exc:
            outcome = exc
        ended[i] = (time.monotonic(), outcome)

    count = sandbox.POOL_SIZE + 1
    spinning = [threading.Thread(target=spin, args=(i,), daemon=True) for i in range(count)]
    for t in spinning:
        t.start()
    # Every one of a's renders holds a worker or waits for one, and some wait.
    _until(lambda: sum(sandbox.load().get("a", (0, 0))) == count, "all asked for")
    assert sandbox.load()["a"][1] >= 1 and not ended

    assert render_template("calm", "ok {{ X }}", {"X": "1"}, tenant="b") == "ok 1"
    calm_done = time.monotonic()

    for t in spinning:
        t.join(DEADLINE)
    assert len(ended) == count
    for _, outcome in ended.values():
        assert isinstance(outcome, TemplateError), repr(outcome)[:300]
        assert "exceeded the CPU time budget" in str(outcome)
    first_spin_done = min(at for at, _ in ended.values())
    assert calm_done < first_spin_done, "tenant b waited for one of tenant a's renders"


class _Gated(sandbox.WorkerPool):
    """A pool whose renders never reach a worker: each holds its worker until the test
    opens its gate, so the order in which renders get a worker is exact."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.started: list[str] = []
        self.gates: dict[str, threading.Event] = {}
        self.threads: list[threading.Thread] = []

    def _acquire(self, preferred: int, tenant: str) -> int:
        with self._free:  # (re-entrant) so that load() sees both changes at once
            index = super()._acquire(preferred, tenant)
            self.started.append(threading.current_thread().name)
            return index

    def _render_on(self, index: int, name: str, request: bytes) -> str:
        assert self.gates[name].wait(DEADLINE)
        return name

    def _asked(self) -> int:
        return sum(in_flight + waiting for in_flight, waiting in self.load().values())

    def submit(self, tenant: str, name: str) -> None:
        """Ask for a render; return once it holds a worker or waits for one."""
        asked = self._asked()
        self.gates[name] = threading.Event()
        thread = threading.Thread(target=self.render, args=(name, name, {}, tenant), name=name)
        thread.start()
        self.threads.append(thread)
        _until(lambda: self._asked() == asked + 1, f"{name} queued")

    def finish(self, name: str) -> None:
        """Let a render end; return once it has given its worker back."""
        asked = self._asked()
        self.gates[name].set()
        _until(lambda: self._asked() == asked - 1, f"{name} done")

    def expect(self, *names: str) -> None:
        """Exactly these renders, in this order, got a worker (waiting for the last
        to get it, which happens just after the lock is released)."""
        _until(lambda: len(self.started) >= len(names), f"{names[-1]} started")
        assert self.started == list(names)

    def join(self) -> None:
        for gate in self.gates.values():
            gate.set()
        for thread in self.threads:
            thread.join(DEADLINE)


def test_a_tenant_holds_at_most_all_workers_but_one() -> None:
    pool = _Gated(size=3)
    try:
        for name in ("a1", "a2", "a3", "a4"):
            pool.submit("a", name)
        pool.expect("a1", "a2")
        assert pool.load() == {"a": (2, 2)}
        pool.submit("b", "b1")  # the third worker was kept for another tenant
        pool.expect("a1", "a2", "b1")
        pool.finish("a1")  # a's next, in the order asked
        pool.expect("a1", "a2", "b1", "a3")
        pool.finish("b1")  # a is at its limit: this worker stays free...
        assert pool.load() == {"a": (2, 1)}
        pool.submit("c", "c1")  # ...for the next tenant
        pool.expect("a1", "a2", "b1", "a3", "c1")
    finally:
        pool.join()


def test_turns_go_round_the_tenants() -> None:
    pool = _Gated(size=2)  # one worker per tenant
    try:
        pool.submit("a", "a1")
        pool.submit("b", "b1")
        pool.submit("a", "a2")
        pool.submit("c", "c1")  # asked after a2
        pool.expect("a1", "b1")
        pool.finish("a1")  # a and c have nothing in flight; a was just served
        pool.expect("a1", "b1", "c1")
        pool.finish("b1")
        pool.expect("a1", "b1", "c1", "a2")
        pool.finish("c1")
        pool.finish("a2")
        assert pool.load() == {} and pool._served == {}  # nothing kept per tenant
    finally:
        pool.join()
