"""The worker side of the template sandbox (sandbox.py starts these processes): a
loop that reads a render request, renders it in this process under the memory, CPU
and file limits, and replies. Kept apart from the pool so that the parent never
imports the renderer through the sandbox and the renderer never imports this."""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import signal
from multiprocessing.connection import Connection
from types import FrameType

from appinfra.render.sandbox import (
    CPU_SECONDS,
    MEMORY_MIB,
    MIB,
    RETIRE_GROWTH,
    WORKER_NICENESS,
)
from appinfra.render.templates import CpuBudgetExceeded, TemplateError, render_here

_armed = False


def _on_cpu_timer(signum: int, frame: FrameType | None) -> None:
    if _armed:
        raise CpuBudgetExceeded(CPU_SECONDS)


def _vm_bytes() -> int | None:
    """This process's address-space size (what RLIMIT_AS limits); None off Linux."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None


def _limit(which: int, value: int) -> None:
    # Not supported here (or already lower): the other limits still hold.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(which, (value, value))


def serve() -> None:
    """A worker's main loop: read a request, render it under the budgets, reply; exit
    at end of input (the operator closed the pipe or died)."""
    global _armed
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the CLI is for the parent
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    requests = Connection(os.dup(0), writable=False)
    replies = Connection(os.dup(1), readable=False)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)  # nothing may write into the reply pipe but the replies

    # What Jinja2 imports lazily, imported now: later imports would count against the
    # memory budget and could try to write bytecode (see RLIMIT_FSIZE below).
    import pprint  # noqa: F401
    import textwrap  # noqa: F401

    baseline = _vm_bytes()
    if baseline is not None:
        # Hard limits too: nothing in this process may raise them again.
        _limit(resource.RLIMIT_AS, baseline + MEMORY_MIB * MIB)
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_FSIZE, 0)  # writes no files...
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # ...and a write fails, not the process
    _limit(resource.RLIMIT_NPROC, 0)  # starts no processes (ignored for root)
    signal.signal(signal.SIGPROF, _on_cpu_timer)
    replies.send_bytes(b"R")

    while True:
        try:
            request = requests.recv_bytes()
        except (EOFError, OSError):
            return
        name = "template"
        try:
            name, source, context = pickle.loads(request)
            del request
            _armed = True
            signal.setitimer(signal.ITIMER_PROF, CPU_SECONDS)
            try:
                out = render_here(
                    name,
                    source,
                    context or {},
                    cpu_seconds=CPU_SECONDS,
                    memory_mib=MEMORY_MIB,
                    compile_only=context is None,
                )
            finally:
                _armed = False
                signal.setitimer(signal.ITIMER_PROF, 0)
            kind, payload = b"O", out
        except TemplateError as exc:
            kind, payload = (b"B" if exc.budget else b"E"), str(exc)
        except CpuBudgetExceeded:  # the timer fired after the render, before disarming
            kind, payload = b"B", f"{name}: exceeded the CPU time budget of {CPU_SECONDS:g} s"
        except MemoryError:
            kind, payload = b"B", f"{name}: exceeded the memory budget of {MEMORY_MIB} MiB"
        except Exception as exc:  # a bad request: say what kind only
            kind, payload = b"E", f"{name}: the template worker failed ({type(exc).__name__})"
        size = _vm_bytes()
        retire = baseline is not None and size is not None and size > baseline + RETIRE_GROWTH
        try:
            replies.send_bytes(kind + (b"1" if retire else b"0") + payload.encode(
                "utf-8", "surrogatepass"))  # fmt: skip
        except (OSError, MemoryError):
            return
        del payload
        if retire:
            return
