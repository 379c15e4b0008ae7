"""Backends for SecretBinding pki and dynamic (tests/e2e/test_secretbinding_pki.py and
test_secretbinding_dynamic.py): OpenBao's PKI engine with a root CA, and a real
PostgreSQL server behind OpenBao's database engine.

PostgreSQL is Debian's (postgresql-15 or newer, `apt-get install postgresql`: `make test`
installs it when initdb is missing). It refuses to run as root, so it runs as the
`postgres` user the package creates (setpriv, no intermediate process: stopping the
ServerProcess stops postgres itself), on a free loopback port, its data and socket in a
temporary directory of its own, for the session.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac

from tests.e2e.conftest import STARTED, Stores
from tests.support.servers import ServerProcess, free_port

PKI_MOUNT = "pki"


def add_store(stores: Stores, name: str, key_prefix: str, **vault: Any) -> None:
    """A store like vault-main (root token) limited to t-* namespaces and `key_prefix`
    (with {namespace}); the session operator reloads its configuration within a second."""
    main = stores.config["secretStores"]["vault-main"]
    stores.config["secretStores"][name] = {
        "vault": {**main["vault"], **vault},
        "allowedNamespaces": ["t-*"],
        "keyPrefix": key_prefix,
    }
    stores.write()
    time.sleep(2)  # the operator polls its configuration every second in the e2e tests


def enable_pki(bao: hvac.Client, mount: str = PKI_MOUNT) -> str:
    """A PKI engine at `mount` with a self-signed root CA; the CA's PEM."""
    bao.sys.enable_secrets_engine("pki", path=mount, config={"max_lease_ttl": "87600h"})
    root = bao.secrets.pki.generate_root(
        "internal",
        "appinfra test root CA",
        extra_params={"ttl": "87600h", "key_type": "ec", "key_bits": 256},
        mount_point=mount,
    )
    return str(root["data"]["certificate"])


def pki_role(bao: hvac.Client, name: str, domains: list[str], mount: str = PKI_MOUNT) -> None:
    """A role issuing short-lived EC certificates for subdomains of `domains` and IP SANs.
    not_before_duration 1s (OpenBao backdates 30s by default): the lifetime the operator
    sees is the ttl asked for, so short test ttls renew when the test expects."""
    bao.secrets.pki.create_or_update_role(
        name,
        extra_params={
            "allowed_domains": domains,
            "allow_subdomains": True,
            "allow_bare_domains": True,
            "allow_ip_sans": True,
            "key_type": "ec",
            "key_bits": 256,
            "max_ttl": "1h",
            "not_before_duration": "1s",
        },
        mount_point=mount,
    )


# ---------------------------------------------------------------- PostgreSQL


def postgres_bin() -> Path | None:
    """Debian's PostgreSQL binaries (the newest installed version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Postgres:
    port: int
    password: str  # of the superuser `postgres`, which OpenBao's database engine uses
    bin: Path
    socket_dir: Path

    def query(self, sql: str) -> str:
        """Run `sql` as the superuser over the unix socket; the output, unaligned."""
        return subprocess.run(
            [str(self.bin / "psql"), "-h", str(self.socket_dir), "-p", str(self.port),
             "-U", "postgres", "-d", "postgres", "-At", "-c", sql],
            check=True, capture_output=True, text=True, timeout=30,
            env={**os.environ, "PGPASSWORD": self.password},
        ).stdout.strip()  # fmt: skip

    def roles(self) -> set[str]:
        return set(self.query("SELECT rolname FROM pg_roles").split())

    def can_log_in(self, user: str, password: str) -> bool:
        """Whether `user` logs in over TCP with `password` (scram), as an app would."""
        proc = subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", user,
             "-d", "postgres", "-At", "-c", "SELECT 1"],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "PGPASSWORD": password},
        )  # fmt: skip
        return proc.returncode == 0


def start_postgres(log_dir: Path) -> Iterator[Postgres]:
    """A PostgreSQL server for the session, as the `postgres` user."""
    binaries = postgres_bin()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    user = pwd.getpwnam("postgres")
    # Its own directory, owned by postgres (initdb refuses a data directory it cannot own).
    home = Path(tempfile.mkdtemp(prefix="appinfra-pg-"))
    os.chmod(home, 0o711)
    data, sockets = home / "data", home / "sockets"
    for path in (data, sockets):
        path.mkdir()
        os.chown(path, user.pw_uid, user.pw_gid)
    password = secrets.token_hex(16)
    pwfile = home / "pw"
    pwfile.write_text(password)
    os.chown(pwfile, user.pw_uid, user.pw_gid)
    as_postgres = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                   "--init-groups", "--"]  # fmt: skip
    subprocess.run(
        [*as_postgres, str(binaries / "initdb"), "-D", str(data), "-U", "postgres",
         f"--pwfile={pwfile}", "--auth=scram-sha-256", "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True, timeout=120, cwd=home,
    )  # fmt: skip
    pwfile.unlink()
    port = free_port()
    proc = ServerProcess(
        "postgres",
        [*as_postgres, str(binaries / "postgres"), "-D", str(data), "-p", str(port),
         "-k", str(sockets), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        log_dir,
    ).start()  # fmt: skip
    STARTED.append(proc)
    server = Postgres(port, password, binaries, sockets)
    proc.wait_ready(lambda: server.query("SELECT 1") == "1", 60)
    try:
        yield server
    finally:
        # SIGINT: PostgreSQL's fast shutdown. Its SIGTERM waits for every client to
        # disconnect, and OpenBao keeps its connections open.
        if proc.proc is not None and proc.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.proc.pid, signal.SIGINT)
        proc.stop()
        shutil.rmtree(home, ignore_errors=True)


def enable_database(bao: hvac.Client, pg: Postgres, mount: str = "database") -> None:
    """OpenBao's database engine at `mount`, connected to `pg` as its superuser."""
    bao.sys.enable_secrets_engine("database", path=mount)
    bao.secrets.database.configure(
        "pg",
        "postgresql-database-plugin",
        allowed_roles=["*"],
        connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{pg.port}"
        "/postgres?sslmode=disable",
        username="postgres",
        password=pg.password,
        verify_connection=True,
        mount_point=mount,
    )


def database_role(
    bao: hvac.Client, name: str, ttl: str, max_ttl: str, mount: str = "database"
) -> None:
    """A role whose credentials are a PostgreSQL login role valid until the lease ends."""
    bao.secrets.database.create_role(
        name,
        "pg",
        creation_statements=[
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
            "VALID UNTIL '{{expiration}}';"
        ],
        revocation_statements=['DROP ROLE IF EXISTS "{{name}}";'],
        default_ttl=ttl,
        max_ttl=max_ttl,
        mount_point=mount,
    )
