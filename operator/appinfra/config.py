"""The operator configuration file: loaded at start, re-read when it changes.

An invalid file is reported in the log and the last valid configuration stays in
force, so a typo in a ConfigMap edit never takes secret syncing down. Change
detection polls the file's content (Kubernetes updates a mounted ConfigMap by
swapping a symlink, which inotify-style mtime watching on the path can miss).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
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
