"""A fault-injecting HTTP proxy on 127.0.0.1, for the fault tests.

It forwards every request to one upstream (moto), byte for byte, and counts what it
sees. Flip `mode` to make it answer by itself instead, the way AWS does when it is
in trouble:

- "throttle": HTTP 400 with `{"__type": "ThrottlingException", "message": "Rate
  exceeded"}`, the awsJson1.1 error shape of Secrets Manager and SSM. botocore's JSON
  parser takes the error code from `__type` (the part after a `#`, if any) and the
  message from `message`/`Message`, so clients see `ThrottlingException`, exactly as
  from the real service.
- "unavailable": HTTP 503 with an empty body (botocore reports the code "503").

Requests are counted per mode, so a test can tell how many requests the operator
sent while the faults were on (retries included: botocore's own retry is a second
HTTP request). Each is also recorded with the AWS operation it names and the answer
the client got (`calls`): moto keeps no audit log, so in "forward" mode this proxy is
where the tests count AWS calls, at the server's door rather than in the operator.
Only names and codes are kept, never a request or response body.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import parse_qs, urlsplit

Mode = Literal["forward", "throttle", "unavailable"]

THROTTLE_BODY = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
UPSTREAM_TIMEOUT = 10.0
_XML_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")


@dataclass(frozen=True)
class Call:
    """One request as the client saw it answered."""

    at: float  # time.monotonic() when the answer was ready
    mode: Mode
    operation: str  # "GetSecretValue", "GetParameter", "AssumeRole", ...; "" if none named
    status: int  # the HTTP status the client got
    error: str  # the AWS error code when refused ("ParameterNotFound", ...), else ""


def operation_of(headers: dict[str, str], query: str, body: bytes) -> str:
    """The AWS operation a request names: the X-Amz-Target header of the JSON protocols
    (Secrets Manager, SSM: "secretsmanager.GetSecretValue"), else the Action parameter
    of the query protocol (STS), in a form body or the query string."""
    target = headers.get("x-amz-target", "")
    if target:
        return target.rsplit(".", 1)[-1]
    form = ""
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = body.decode(errors="replace")
    for params in (form, query):
        action = parse_qs(params).get("Action")
        if action:
            return action[0]
    return ""


def error_of(status: int, body: bytes) -> str:
    """The AWS error code of a refusal: `__type` of the JSON protocols (the part after a
    "#"), `<Code>` of the query protocol's XML; the status itself if neither is there."""
    if status < 400:
        return ""
    try:
        kind = json.loads(body).get("__type", "")
        if kind:
            return str(kind).rsplit("#", 1)[-1]
    except (ValueError, AttributeError):
        pass
    match = _XML_CODE.search(body)
    return match.group(1).decode() if match else str(status)


class FaultProxy:
    """Forwards to `upstream` (http://127.0.0.1:PORT) unless told to fail; thread-safe."""

    def __init__(self, upstream: str):
        url = urlsplit(upstream)
        if url.scheme != "http" or url.hostname != "127.0.0.1" or url.port is None:
            raise ValueError(f"upstream must be http://127.0.0.1:PORT, not {upstream!r}")
        self.upstream = (url.hostname, url.port)
        self.mode: Mode = "forward"
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.log: list[tuple[float, Mode]] = []
        """(time.monotonic(), mode) of every request, for failure messages."""
        self._calls: list[Call] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def count(self, mode: Mode | None = None) -> int:
        """Requests received so far (all of them, or those answered in `mode`)."""
        with self._lock:
            return sum(self._counts.values()) if mode is None else self._counts[mode]

    def calls(self, operation: str | None = None) -> list[Call]:
        """Every request answered so far, in order (or those naming `operation`)."""
        with self._lock:
            return [c for c in self._calls if operation is None or c.operation == operation]

    def _answered(self, mode: Mode, operation: str, status: int, body: bytes) -> None:
        """Recorded before the answer is sent: a client that has its response sees its
        call in `calls`."""
        call = Call(time.monotonic(), mode, operation, status, error_of(status, body))
        with self._lock:
            self._calls.append(call)

    def _record(self) -> Mode:
        with self._lock:
            mode = self.mode
            self._counts[mode] += 1
            self.log.append((time.monotonic(), mode))
            return mode


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
        _mode: Mode = "forward"  # of the request being handled
        _operation = ""

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            mode = proxy._record()
            headers = {key.lower(): value for key, value in self.headers.items()}
            self._operation = operation_of(headers, urlsplit(self.path).query, body)
            self._mode = mode
            if mode == "throttle":
                self._answer(400, THROTTLE_BODY, "application/x-amz-json-1.1")
            elif mode == "unavailable":
                self._answer(503, b"", "text/plain")
            else:
                self._forward(body)

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            proxy._answered(self._mode, self._operation, status, body)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
            self.end_headers()
            self.wfile.write(body)

        def _forward(self, body: bytes) -> None:
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=UPSTREAM_TIMEOUT)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except OSError:
                self._answer(502, b"", "text/plain")
                return
            finally:
                conn.close()
            proxy._answered(self._mode, self._operation, resp.status, data)
            self.send_response(resp.status)
            for key, value in resp.getheaders():
                if key.lower() not in _HOP_BY_HOP | {"content-length", "server", "date"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the counts are the record."""

    return Handler
