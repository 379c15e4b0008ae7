"""The validating admission webhook, served by the operator process through kopf's
admission support (kopf.WebhookServer: TLS from a certificate directory).

Every replica serves it, leader or standby: it only reads (the cache, the operator's
configuration, and the API server for objects the cache does not hold). The checks are
in webhook_checks.py. Whatever the webhook cannot decide (the runtime not started yet,
an API error, a slow check) is allowed: the status reports it later, and the
ValidatingWebhookConfiguration's failurePolicy Ignore covers a webhook that is down.
The operator is correct without it; it only tells users sooner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf

from appinfra.controller import Runtime
from appinfra.webhook_checks import CHECKS, RESOURCES, Verdict

log = logging.getLogger("appinfra.webhook")

WEBHOOK_ID = "validate"  # the URL path: https://HOST:PORT/validate
CHECK_SECONDS = 5.0  # the API server waits 10 s by default; answer (allow) well before


@dataclass(frozen=True)
class WebhookOptions:
    port: int
    cert_dir: str
    addr: str = "0.0.0.0"

    def server(self) -> kopf.WebhookServer:
        certs = Path(self.cert_dir)
        return kopf.WebhookServer(
            addr=self.addr,
            port=self.port,
            certfile=str(certs / "tls.crt"),
            pkeyfile=str(certs / "tls.key"),
        )


class _DenialIsNoError(logging.Filter):
    """kopf logs a denial (our AdmissionError) as "Webhook 'validate' failed permanently"
    at ERROR: every rejected `kubectl apply` of any tenant would add an error line to the
    operator's log. The denial is logged once, at INFO, by the handler itself."""

    PREFIX = f"Webhook {WEBHOOK_ID!r} failed permanently"

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.PREFIX)


def register(registry: kopf.OperatorRegistry, runtime: Callable[[], Runtime | None]) -> None:
    """Validation handlers for the kinds with checks CEL cannot do. `runtime`: the
    operator's Runtime once started (None before)."""
    logging.getLogger("kopf.objects").addFilter(_DenialIsNoError())
    # Its own threads: the loop's default executor is the reconcilers', all of them busy
    # during a cold start, when an apply must not wait for a reconcile.
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhook")

    async def validate(**kwargs: Any) -> None:  # kopf's keyword arguments: body, warnings...
        body: kopf.Body = kwargs["body"]
        warnings: list[str] = kwargs["warnings"]
        rt = runtime()
        if rt is None:
            return  # not started: allow, status will tell
        obj = dict(body)
        old = kwargs.get("old")
        if old is not None and (old.get("spec") == obj.get("spec") or
                                obj["metadata"].get("deletionTimestamp")):  # fmt: skip
            # Only a spec change is judged: the operator's own writes (finalizers,
            # annotations) and a resource's way out must pass whatever it holds.
            return
        check = CHECKS.get(obj["kind"])
        if check is None:
            return
        loop = asyncio.get_running_loop()
        try:
            verdict: Verdict = await asyncio.wait_for(
                loop.run_in_executor(pool, check, rt, obj), CHECK_SECONDS
            )
        except Exception:  # undecided: allow; the reconcile reports it in status
            log.warning("admission check of %s %s/%s failed; allowed", obj["kind"],
                        obj["metadata"].get("namespace"), obj["metadata"].get("name"),
                        exc_info=True)  # fmt: skip
            return
        warnings.extend(verdict.warnings)
        if verdict.denied:
            log.info("denied %s %s/%s: %s", obj["kind"],
                     obj["metadata"].get("namespace"), obj["metadata"].get("name"),
                     verdict.denied)  # fmt: skip
            raise kopf.AdmissionError(verdict.denied, code=400)

    for res in RESOURCES:
        kopf.on.validate(res.group, res.version, res.plural, id=WEBHOOK_ID,
                         operations=["CREATE", "UPDATE"], registry=registry)(validate)  # fmt: skip
