"""Structured logs: one JSON object per line (or plain text), with the resource being
reconciled and a reconcile id attached to every line logged while it runs.

The context travels in a contextvar, so library code and our helpers log with
the right kind/namespace/name without passing it around.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_CONTEXT: contextvars.ContextVar[Reconciling | None] = contextvars.ContextVar(
    "appinfra_reconciling", default=None
)

# Chatty at INFO, and the access log of /healthz probes says nothing useful.
_QUIET = {"aiohttp.access": logging.WARNING, "kopf.objects": logging.WARNING}
# Libraries that log request/response bodies at DEBUG: never below INFO (secrets).
_NEVER_DEBUG = ("botocore", "boto3", "urllib3", "hvac", "s3transfer")


@dataclass(frozen=True)
class Reconciling:
    kind: str
    namespace: str
    name: str
    reconcile_id: str


@contextmanager
def reconciling(kind: str, namespace: str, name: str) -> Iterator[Reconciling]:
    ctx = Reconciling(kind, namespace, name, uuid.uuid4().hex[:12])
    token = _CONTEXT.set(ctx)
    try:
        yield ctx
    finally:
        _CONTEXT.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _CONTEXT.get()
        record.kind = ctx.kind if ctx else ""
        record.namespace = ctx.namespace if ctx else ""
        record.objname = ctx.name if ctx else ""
        record.reconcile_id = ctx.reconcile_id if ctx else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "logger": record.name,
        }
        for key, attr in (
            ("kind", "kind"), ("namespace", "namespace"), ("name", "objname"),
            ("reconcileID", "reconcile_id"),
        ):  # fmt: skip
            value = getattr(record, attr, "")
            if value:
                out[key] = value
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        kind = getattr(record, "kind", "")
        if kind:
            line += f" [{kind} {record.namespace}/{record.objname} {record.reconcile_id}]"  # type: ignore[attr-defined]
        return line


def configure(log_format: str, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(level)
    for name in _NEVER_DEBUG:
        logging.getLogger(name).setLevel(logging.INFO)
