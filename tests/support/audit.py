"""Counting at the servers, not in the operator: the kube-apiserver's audit log and
OpenBao's file audit device. (moto keeps no log: AWS calls are counted at a forwarding
proxy in front of it, tests/support/faultproxy.py.)

A test that asks "did the operator write?" or "did it call the backend?" must not
ask the operator: a replica that believes it stopped writing, or a check that runs
after the call it should have prevented, is exactly the failure to catch. The
API server records every write with the user that sent it; OpenBao every request
with its path. Both are written synchronously (kube-apiserver in blocking mode,
OpenBao always), so what a test reads after a request returned includes it.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})

# Writes only, at Metadata level: who, what, when and the response code, never a body
# (no Secret data in the log). The control plane's own components write Leases and
# status all the time; they stay out so that the log stays small over a whole session.
AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "users": ["system:kube-controller-manager", "system:apiserver"]},
        {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
        {"level": "Metadata", "verbs": sorted(WRITE_VERBS)},
        {"level": "None"},
    ],
}


def apiserver_args(home: Path, rules: dict[str, Any] | None = None) -> tuple[Path, list[str]]:
    """The audit log path under `home`/logs and the `controlplane up` flags that write it;
    `rules`: a policy of its own instead of AUDIT_POLICY."""
    (home / "logs").mkdir(parents=True, exist_ok=True)
    policy = home / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(rules or AUDIT_POLICY))
    log = home / "logs" / "audit.log"
    return log, [
        f"--apiserver-arg=--audit-policy-file={policy}",
        f"--apiserver-arg=--audit-log-path={log}",
        "--apiserver-arg=--audit-log-format=json",
        # Blocking: an event is in the file before its response is sent, so what a
        # test reads after a request returned includes that request.
        "--apiserver-arg=--audit-log-mode=blocking",
        # The session's log must not rotate away what a test counts.
        "--apiserver-arg=--audit-log-maxsize=0",
    ]


def service_account_user(namespace: str, name: str) -> str:
    """The username the API server records for a ServiceAccount's token."""
    return f"system:serviceaccount:{namespace}:{name}"


@dataclass
class Write:
    received: datetime.datetime
    completed: datetime.datetime
    verb: str
    resource: str  # with "/subresource" when there is one
    namespace: str
    name: str
    code: int | None

    def __str__(self) -> str:
        return (
            f"{self.received.time()}..{self.completed.time()} {self.verb} {self.resource} "
            f"{self.namespace}/{self.name} {self.code}"
        )


def _stamp(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def writes_by(audit_log: Path, username: str, *, leases: bool = False) -> list[Write]:
    """Every write `username` sent that reached the API server, in order of arrival;
    Leases excepted unless `leases` (they are how leadership changes hands). Refused
    writes count too: a replica that is not the leader must not even try."""
    out = []
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if (
            event.get("stage") != "ResponseComplete"
            or event["user"]["username"] != username
            or event["verb"] not in WRITE_VERBS
            or (ref.get("resource") == "leases" and not leases)
        ):
            continue
        sub = ref.get("subresource")
        out.append(
            Write(
                received=_stamp(event["requestReceivedTimestamp"]),
                completed=_stamp(event["stageTimestamp"]),
                verb=event["verb"],
                resource=f"{ref.get('resource')}{'/' + sub if sub else ''}",
                namespace=ref.get("namespace", ""),
                name=ref.get("name", ""),
                code=(event.get("responseStatus") or {}).get("code"),
            )
        )
    return sorted(out, key=lambda w: w.received)


def requests_by(audit_log: Path, username: str) -> list[dict[str, Any]]:
    """Every completed request of `username` the policy logged (raw audit events)."""
    out = []
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        if event.get("stage") == "ResponseComplete" and event["user"]["username"] == username:
            out.append(event)
    return out


def bao_reads(audit_log: Path) -> list[str]:
    """The path of every read OpenBao's file audit device recorded, in order (writes, such
    as a test putting the secret there first, are left out).

    Paths are logged in clear (only values are HMAC'd), so a test can look for the
    secret keys it expects never to be read."""
    paths = []
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        request = entry.get("request") or {}
        if entry.get("type") == "request" and request.get("operation") in ("read", "list"):
            paths.append(str(request.get("path", "")))
    return paths


@dataclass(frozen=True)
class BaoRequest:
    """One request OpenBao answered, from the "response" entry its audit device wrote."""

    operation: str  # "read", "list"; logins and token renewals are "update"
    path: str  # e.g. "secret/data/shop/db", "auth/approle/login", "auth/token/renew-self"
    error: str  # "" when served; OpenBao's message otherwise ("permission denied", ...)
    policies: frozenset[str]  # of the token that sent it; empty without one (a first login)

    @property
    def denied(self) -> bool:
        return "permission denied" in self.error


def bao_requests(
    audit_log: Path,
    path: str | None = None,
    *,
    prefix: str | None = None,
    operation: str | None = None,
) -> list[BaoRequest]:
    """Every request OpenBao answered, in order, or those to exactly `path` / under
    `prefix` / of `operation` ("read": leaves out a test's own writes of the secret). A
    request has one "response" entry, written before the response is sent (a "request"
    entry too, but an answered request is what a client's count means).

    The token behind a request is logged as an HMAC, but its policies in clear: a test
    that gives its own role a policy of its own tells that role's renewals from others'."""
    out = []
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        request = entry.get("request") or {}
        where = str(request.get("path", ""))
        if (
            entry.get("type") != "response"
            or (path is not None and where != path)
            or (prefix is not None and not where.startswith(prefix))
            or (operation is not None and request.get("operation") != operation)
        ):
            continue
        out.append(
            BaoRequest(
                operation=str(request.get("operation", "")),
                path=where,
                error=str(entry.get("error") or ""),
                policies=frozenset((entry.get("auth") or {}).get("policies") or ()),
            )
        )
    return out
