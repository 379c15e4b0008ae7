"""Reading the operator's /metrics (Prometheus text format) into numbers."""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass

from kubeapi import Api

WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match.group(3) or ""))
        try:
            value = float(match.group(4))
        except ValueError:
            continue
        out.append(Sample(match.group(1), labels, value))
    return out


class Metrics:
    """One scrape."""

    def __init__(self, samples: list[Sample]):
        self.samples = samples

    @classmethod
    def scrape(cls, port: int, timeout: float = 10) -> Metrics:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return cls(parse(resp.read().decode()))

    def total(self, name: str, **where: str) -> float:
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in where.items())
        )

    def by(self, name: str, *keys: str) -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for s in self.samples:
            if s.name == name:
                k = tuple(s.labels.get(key, "") for key in keys)
                out[k] = out.get(k, 0.0) + s.value
        return out

    def writes(self) -> float:
        return sum(self.total("appinfra_api_requests_total", verb=v) for v in WRITE_VERBS)

    def requests(self) -> dict[str, float]:
        """Requests by "VERB resource", for the request mix."""
        pairs = self.by("appinfra_api_requests_total", "verb", "resource")
        return {f"{v} {r}": n for (v, r), n in sorted(pairs.items()) if n}

    def reconciles(self, kind: str | None = None) -> float:
        if kind is None:
            return self.total("appinfra_reconcile_total")
        return self.total("appinfra_reconcile_total", kind=kind)

    def get_secret_reads(self) -> float:
        return self.total("appinfra_backend_requests_total", operation="get_secret")


def apiserver_requests(api: Api) -> dict[str, float]:
    """The API server's own request count by "VERB resource[/subresource]": what it served,
    from every client (the tool measured, the bench, the controllers)."""
    resp = api.raw("GET", "/metrics", content_type="text/plain")
    text = resp.data.decode()
    resp.release_conn()
    pairs = Metrics(parse(text)).by("apiserver_request_total", "verb", "resource", "subresource")
    return {f"{v} {r}{'/' + sub if sub else ''}": n for (v, r, sub), n in pairs.items()}
