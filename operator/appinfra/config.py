"""The operator configuration file (loaded at start, re-read when it changes) and the
process's tuning knobs from its environment.

An invalid file is reported in the log and the last valid configuration stays in
force, so a typo in a ConfigMap edit never takes secret syncing down. Change
detection polls the file's content (Kubernetes updates a mounted ConfigMap by
swapping a symlink, which inotify-style mtime watching on the path can miss).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from appinfra.api.operatorconfig import ConfigError, OperatorConfig, load_config

log = logging.getLogger("appinfra.config")


class ConfigFile:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.current = OperatorConfig()
        self._digest: str | None = None
        self._listeners: list[Callable[[OperatorConfig], None]] = []

    def on_change(self, listener: Callable[[OperatorConfig], None]) -> None:
        self._listeners.append(listener)

    def load(self) -> bool:
        """Re-read the file if its content changed. Returns whether a new config took effect."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            if self._digest is None:
                log.warning("configuration file %s not found: no secret stores", self.path)
                self._digest = ""
            return False
        except OSError as exc:
            log.error("cannot read configuration file %s: %s", self.path, exc.strerror)
            return False
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            config = load_config(text)
        except ConfigError as exc:
            log.error("%s: %s; keeping the last valid configuration", self.path, exc)
            return False
        self.current = config
        log.info(
            "configuration loaded from %s: stores %s",
            self.path,
            ", ".join(sorted(config.secret_stores)) or "(none)",
        )
        for listener in self._listeners:
            listener(config)
        return True


@dataclass(frozen=True)
class Tuning:
    """Knobs of the running operator: read once from the environment at start-up (by
    `appinfra run`) and passed down; nothing else reads these variables."""

    workers: int = 16
    resync_seconds: float = 600.0
    config_poll_seconds: float = 5.0
    shared_read_window: float = 60.0
    sync_backoff_base: float = 2.0  # a failed SecretBinding sync: 2 s, doubling ...
    sync_backoff_cap: float = 300.0  # ... up to 5 minutes
    # How often an optional API that is not served (the Prometheus Operator's CRDs) is
    # looked for again: one LIST per type, however many resources wait for it.
    optional_api_recheck: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Tuning:
        def number(name: str, default: float) -> float:
            return float(env.get(name, default))

        defaults = cls()
        return cls(
            workers=int(number("APPINFRA_WORKERS", defaults.workers)),
            resync_seconds=number("APPINFRA_RESYNC_SECONDS", defaults.resync_seconds),
            config_poll_seconds=number(
                "APPINFRA_CONFIG_POLL_SECONDS", defaults.config_poll_seconds
            ),
            shared_read_window=number(
                "APPINFRA_SHARED_READ_WINDOW_SECONDS", defaults.shared_read_window
            ),
            sync_backoff_base=number("APPINFRA_BACKOFF_BASE_SECONDS", defaults.sync_backoff_base),
            sync_backoff_cap=number("APPINFRA_BACKOFF_CAP_SECONDS", defaults.sync_backoff_cap),
            optional_api_recheck=number(
                "APPINFRA_OPTIONAL_API_RECHECK_SECONDS", defaults.optional_api_recheck
            ),
        )
