"""Which optional APIs (another project's CRDs) the API server serves right now.

appinfra's own kinds and the built-in ones are always there. The Prometheus Operator's
kinds are there only where a platform team installed its CRDs, and they may come and
go while the operator runs. The informer of each optional type keeps this record: it
finds the API missing (404 on its LIST), looks again every `recheck` seconds (one LIST
per type, however many resources wait for it), and says when the answer changes, so
the resources that need the type are reconciled again then, not polled one by one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from appinfra.kube.resources import Resource


class ApiPresence:
    def __init__(self) -> None:
        self._absent: set[Resource] = set()
        self._lock = threading.Lock()

    def available(self, res: Resource) -> bool:
        """False only for an optional type whose informer last found it not served."""
        with self._lock:
            return res not in self._absent

    def missing(self, resources: Iterable[Resource]) -> list[Resource]:
        """The ones of `resources` not served now, in order."""
        with self._lock:
            return [res for res in resources if res in self._absent]

    def set(self, res: Resource, served: bool) -> bool:
        """Record what an informer found; True when that changed the answer."""
        with self._lock:
            was = res not in self._absent
            if served:
                self._absent.discard(res)
            else:
                self._absent.add(res)
            return was != served
