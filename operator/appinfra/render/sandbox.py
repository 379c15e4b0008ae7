"""The template worker processes: every user template renders in one of a few
long-lived child processes, each with an address-space limit and a CPU timer, and is
killed after a wall-clock timeout. A hostile template costs a worker (replaced on the
next render), never the operator's memory, CPU or threads.

Workers are plain `python -P -c ...` processes (not forked from the operator: they do
not inherit its memory, threads or open connections), started on first use and reused,
so a normal render pays a round trip over a pipe, not a process start. Requests go to
the worker as a pickle (we trust what we send); replies come back as bytes with a
one-byte kind, never unpickled, so a worker that were ever subverted by a template
still could not run code in the operator.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

MIB = 1024 * 1024

# The chart gives the whole container 256 MiB; the operator itself uses ~130 MiB with
# 1,000 objects of each kind. A worker costs ~13 MiB of its own (Python and Jinja2,
# anonymous memory; the shared libraries' pages are shared with the operator and
# counted once) plus at most MEMORY_MIB, since the address-space limit is its baseline
# plus MEMORY_MIB. So three workers at their limit add 3 x (13 + 24) = 111 MiB and the
# pod peaks at ~241 MiB, under its limit even when three hostile templates run at once.
# 24 MiB is still six times what the largest output needs: 1 Mi characters outside
# Latin-1 are 4 MiB as a str, and the join and the UTF-8 reply copy it a few times.
# Three workers, not two, so that a tenant held to all of them but one (see
# WorkerPool) still leaves one for everyone else.
POOL_SIZE = 3
MEMORY_MIB = 24
# A real template renders in milliseconds; one second of CPU is a hundred times a
# large one. It is short because the container's CPU limit (1 core) is shared with the
# operator, and because while a template spins it holds one of only POOL_SIZE workers.
CPU_SECONDS = 1.0
# The CPU timer cannot interrupt one long C call (say a huge integer product), and a
# loaded node may give a worker little CPU: after this long the worker is killed.
WALL_SECONDS = 5.0
# Workers yield the CPU to the operator's own threads (watches, API calls, leases): at
# nice 5 a worker weighs about a third of a nice-0 thread, so even with all three
# workers spinning the operator keeps about half of a contended core.
WORKER_NICENESS = 5
# A render that ran out of CPU or memory is remembered (by a digest of the template,
# its name and its context) and fails at once when asked again, as every resync does:
# rendering is deterministic, so it would only burn the same budget again.
REMEMBERED_FAILURES = 256
START_SECONDS = 30.0  # a new worker imports Jinja2; generous for a busy node
# A worker whose address space grew by half its budget (fragmentation after a large
# render) exits after replying; the next render starts a fresh one.
RETIRE_GROWTH = MEMORY_MIB * MIB // 2
MAX_REPLY = 4 * 1024 * 1024 + 1024  # the 1 Mi character output in UTF-8, and then some
# Environment variables a worker needs to find Python and appinfra, and nothing else:
# the operator's environment may hold credentials.
PASSED_ENV = ("PATH", "PYTHONPATH", "PYTHONHOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ")

_ENTRY = "from appinfra.render.sandbox_worker import serve; serve()"


class SandboxError(Exception):
    """A render failed; the message is value-free and starts with the template's name."""


class _BudgetFailure(SandboxError):
    """The worker's CPU timer or memory limit stopped the render: worth remembering."""


class _Worker:
    def __init__(self) -> None:
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-B", "-c", _ENTRY],
                stdin=request_r,
                stdout=reply_w,
                stderr=subprocess.DEVNULL,  # a crashing worker must not print values
                env=env,
                close_fds=True,
            )
        except BaseException:
            os.close(request_w)
            os.close(reply_r)
            raise
        finally:
            os.close(request_r)
            os.close(reply_w)
        self.requests = Connection(request_w, readable=False)
        self.replies = Connection(reply_r, writable=False)
        self.retired = False
        try:
            ready = self.replies.poll(START_SECONDS) and self.replies.recv_bytes(16) == b"R"
        except (EOFError, OSError):  # it died while starting (cannot import, no memory)
            ready = False
        if not ready:
            self.stop(kill=True)
            raise OSError("the worker did not report ready")

    def usable(self) -> bool:
        return not self.retired and self.proc.poll() is None

    def stop(self, kill: bool) -> int | None:
        """Close the pipes (a worker exits on end of input) and reap the process."""
        self.requests.close()
        self.replies.close()
        if kill:
            self.proc.kill()
        try:
            return self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def forget(self) -> None:
        """In a forked child: drop our copies of the pipes, leave the process alone."""
        self.requests.close()
        self.replies.close()


class WorkerPool:
    """Up to `size` workers, each serving one render at a time. Thread-safe: a render
    waits for its turn, then takes a free worker (preferring the one that compiled this
    source before, for its template cache).

    Turns are taken by tenant (a namespace), so that one tenant's slow templates delay
    only that tenant's renders:
    1. A tenant holds at most `tenant_limit` workers at once: max(1, size - 1) by
       default. However many hostile templates one namespace renders at once, one
       worker stays free for the others.
    2. A free worker goes to the tenant with the fewest renders in flight; among
       equals, to the one that got a worker least recently (a tenant that never did,
       or not since it last went idle, first). Round-robin, in short.
    3. Within a tenant, renders start in the order they were asked for.
    So a render of a tenant with nothing in flight waits at most until one render in
    flight ends (each is bounded by WALL_SECONDS), however long other tenants' queues
    are. The price: a worker may stay idle while renders of a tenant at its limit wait.
    """

    def __init__(self, size: int = POOL_SIZE, tenant_limit: int | None = None) -> None:
        self._size = size
        self._tenant_limit = tenant_limit if tenant_limit is not None else max(1, size - 1)
        self._slots: list[_Worker | None] = [None] * size
        self._busy = [False] * size
        self._free = threading.Condition()
        self._failed: dict[bytes, str] = {}  # digest -> message, oldest first
        self._reset_turns()

    def _reset_turns(self) -> None:
        self._waiting: dict[int, str] = {}  # ticket -> tenant, in arrival order
        self._in_flight: dict[str, int] = {}  # tenant -> renders holding a worker
        # tenant -> when it last got a worker (a grant number); kept only while the
        # tenant has renders in flight or waiting, so the map is bounded by them.
        self._served: dict[str, int] = {}
        self._tickets = itertools.count()
        self._grants = itertools.count()

    def render(
        self, name: str, source: str, context: Mapping[str, Any] | None, tenant: str = ""
    ) -> str:
        """Render in a worker (`context` None: compile only)."""
        try:
            request = pickle.dumps(
                (name, source, None if context is None else dict(context)), pickle.HIGHEST_PROTOCOL
            )
        except Exception as exc:  # a caller's bug, but still no traceback with values
            raise SandboxError(
                f"{name}: the context cannot be sent ({type(exc).__name__})"
            ) from None
        digest = hashlib.sha256(request).digest()
        with self._free:
            known = self._failed.get(digest)
        if known is not None:
            raise SandboxError(known)
        index = self._acquire(hash(source) % self._size, tenant)
        try:
            return self._render_on(index, name, request)
        except _BudgetFailure as exc:
            with self._free:
                self._failed[digest] = str(exc)
                while len(self._failed) > REMEMBERED_FAILURES:
                    del self._failed[next(iter(self._failed))]
            raise SandboxError(str(exc)) from None
        finally:
            with self._free:
                self._busy[index] = False
                self._in_flight[tenant] -= 1
                self._tidy(tenant)
                self._free.notify_all()  # the next turn may be any waiter's

    def _next_turn(self) -> int | None:
        """The ticket whose turn it is (rules 1-3 in the class docstring), if any."""
        best: tuple[int, int] | None = None
        ticket_of_best = None
        seen: set[str] = set()
        for ticket, tenant in self._waiting.items():  # in arrival order
            if tenant in seen:
                continue  # rule 3: only a tenant's oldest waiting render competes
            seen.add(tenant)
            held = self._in_flight.get(tenant, 0)
            if held >= self._tenant_limit:
                continue  # rule 1
            rank = (held, self._served.get(tenant, -1))  # rule 2
            if best is None or rank < best:
                best, ticket_of_best = rank, ticket
        return ticket_of_best

    def _tidy(self, tenant: str) -> None:
        """Forget a tenant that has nothing in flight nor waiting."""
        if not self._in_flight.get(tenant):
            self._in_flight.pop(tenant, None)
            if tenant not in self._waiting.values():
                self._served.pop(tenant, None)

    def _acquire(self, preferred: int, tenant: str) -> int:
        with self._free:
            ticket = next(self._tickets)
            self._waiting[ticket] = tenant
            try:
                while not (False in self._busy and self._next_turn() == ticket):
                    self._free.wait()
            except BaseException:  # interrupted while waiting: leave the queue
                del self._waiting[ticket]
                self._tidy(tenant)
                self._free.notify_all()
                raise
            del self._waiting[ticket]
            index = preferred if not self._busy[preferred] else self._busy.index(False)
            self._busy[index] = True
            self._in_flight[tenant] = self._in_flight.get(tenant, 0) + 1
            self._served[tenant] = next(self._grants)
            # Another worker may be free, and the next turn is someone else's now (they
            # wake when we release the lock).
            self._free.notify_all()
            return index

    def load(self) -> dict[str, tuple[int, int]]:
        """Renders in flight and waiting, by tenant (for tests and diagnostics)."""
        with self._free:
            tenants = set(self._in_flight) | set(self._waiting.values())
            waiting = list(self._waiting.values())
            return {t: (self._in_flight.get(t, 0), waiting.count(t)) for t in tenants}

    def _worker(self, index: int, name: str) -> _Worker:
        """The slot's worker, started (again) if it has none or its worker ended."""
        worker = self._slots[index]
        if worker is not None and worker.usable():
            return worker
        if worker is not None:
            worker.stop(kill=True)
            self._slots[index] = None
        try:
            worker = _Worker()
        except OSError as exc:
            raise SandboxError(
                f"{name}: the template sandbox could not start ({type(exc).__name__})"
            ) from None
        self._slots[index] = worker
        return worker

    def _render_on(self, index: int, name: str, request: bytes) -> str:
        worker = self._worker(index, name)
        try:
            worker.requests.send_bytes(request)
        except OSError:  # it ended while idle; the request never reached it: once more
            worker.retired = True
            worker = self._worker(index, name)
            try:
                worker.requests.send_bytes(request)
            except OSError as exc:
                worker.retired = True
                raise SandboxError(
                    f"{name}: the template sandbox is not answering ({type(exc).__name__})"
                ) from None
        if not worker.replies.poll(WALL_SECONDS):
            worker.stop(kill=True)
            self._slots[index] = None
            raise SandboxError(
                f"{name}: exceeded the CPU time budget of {CPU_SECONDS:g} s "
                f"(the worker was stopped after {WALL_SECONDS:g} s)"
            )
        try:
            reply = worker.replies.recv_bytes(MAX_REPLY)
        except (EOFError, OSError):
            status = worker.stop(kill=True)
            self._slots[index] = None
            raise SandboxError(
                f"{name}: exceeded the memory budget of {MEMORY_MIB} MiB or crashed "
                f"the template worker (exit status {status})"
            ) from None
        if reply[1:2] == b"1":  # it exits after this reply; reap it now
            worker.stop(kill=False)
            self._slots[index] = None
        text = reply[2:].decode("utf-8", "surrogatepass")
        if reply[:1] == b"O":
            return text
        if reply[:1] == b"B":
            raise _BudgetFailure(text)
        raise SandboxError(text)

    def close(self) -> None:
        """Stop every worker (at exit). A later render starts new ones."""
        with self._free:
            workers = [w for w in self._slots if w is not None]
            self._slots = [None] * self._size
        for worker in workers:
            worker.stop(kill=False)

    def after_fork(self) -> None:
        for worker in self._slots:
            if worker is not None:
                worker.forget()
        self._slots = [None] * self._size
        self._busy = [False] * self._size
        self._free = threading.Condition()
        self._reset_turns()


_POOL = WorkerPool()
atexit.register(_POOL.close)
os.register_at_fork(after_in_child=_POOL.after_fork)


def render(name: str, source: str, context: Mapping[str, Any], tenant: str = "") -> str:
    """Render in a worker, taking turns by tenant (see WorkerPool); raises SandboxError
    with a value-free message."""
    return _POOL.render(name, source, context, tenant)


def compile(name: str, source: str, tenant: str = "") -> None:
    """Compile in a worker without rendering; raises SandboxError like render."""
    _POOL.render(name, source, None, tenant)


def load() -> dict[str, tuple[int, int]]:
    """Renders in flight and waiting, by tenant."""
    return _POOL.load()


def shutdown() -> None:
    """Stop the workers now (they also stop at exit, or when this process dies)."""
    _POOL.close()
