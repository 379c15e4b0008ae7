"""moto's server mode on a free loopback port: the one way the e2e tests start it.

The session's shared moto (tests/e2e/conftest.py), the fault tests' own one (behind
a fault-injecting proxy) and the IAM-enforcing one of the provider tests are all
started here, so that they cannot drift apart in how they wait for readiness.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import ServerProcess, free_port, http_ok, tool

READY_TIMEOUT = 60.0


@dataclass
class Moto:
    endpoint: str
    process: ServerProcess


def start_moto(log_dir: Path, name: str = "moto", track: list[ServerProcess] | None = None) -> Moto:
    """`moto_server` logging to `log_dir`/`name`.log, ready to answer; `track`: a list
    the process is added to before the readiness wait (the session's log-attachment
    list), so a failure while waiting reports its log too. The caller stops it."""
    port = free_port()
    proc = ServerProcess(
        name, [tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)], log_dir
    ).start()
    if track is not None:
        track.append(proc)
    endpoint = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: http_ok(f"{endpoint}/moto-api/data.json"), READY_TIMEOUT)
    return Moto(endpoint, proc)
