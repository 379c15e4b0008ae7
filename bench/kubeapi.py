"""The bench's own API access: the kubernetes package's HTTP plumbing, JSON dicts in and out.

No generated model classes (they cost more client CPU than the API server spends on a
request, which would make the plain-client baseline slow for the wrong reason). One
`Api` is safe to share between threads; its connection pool holds `pool` connections
so a thread pool of that size never opens throwaway TLS connections.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

Obj = dict[str, Any]

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message[:300]}")
        self.status = status


def path(
    api_version: str, plural: str, namespace: str | None = None, name: str | None = None
) -> str:
    """REST path of a collection or an object (core group when there is no slash)."""
    base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


PLURALS = {
    "ConfigMap": "configmaps",
    "Deployment": "deployments",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "NetworkPolicy": "networkpolicies",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "Ingress": "ingresses",
    "Namespace": "namespaces",
    "Secret": "secrets",
    "ServiceProfile": "serviceprofiles",
    "SecretBinding": "secretbindings",
    "HealthPolicy": "healthpolicies",
    "RateLimitPolicy": "ratelimitpolicies",
}


def object_path(obj: Obj, collection: bool = False) -> str:
    meta = obj["metadata"]
    return path(
        obj["apiVersion"],
        PLURALS[obj["kind"]],
        meta.get("namespace"),
        None if collection else meta["name"],
    )


class Api:
    def __init__(self, kubeconfig: Path, pool: int = 32, timeout: float = 60):
        cfg = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=cfg
        )
        cfg.connection_pool_maxsize = pool
        self.api = client.ApiClient(cfg)
        self.timeout = timeout
        self.count = 0  # requests sent (for the plain client's request total)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    def raw(
        self,
        method: str,
        resource_path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = None,
    ) -> Any:
        """Send one request; returns the urllib3 response, not yet read."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        _, url, headers, body, _ = self.api.param_serialize(
            method,
            resource_path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        with self._lock:
            self.count += 1
        try:
            resp = self.api.call_api(
                method, url, header_params=headers, body=body,
                _request_timeout=timeout or self.timeout,
            )  # fmt: skip
        except client.ApiException as exc:
            raise ApiError(exc.status or 0, str(exc.body or exc.reason)) from None
        return resp.response

    def request(self, method: str, resource_path: str, **kw: Any) -> Any:
        resp = self.raw(method, resource_path, **kw)
        data = resp.data
        resp.release_conn()
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, data.decode(errors="replace"))
        return json.loads(data) if data else None

    def get(self, resource_path: str, **query: str) -> Obj | None:
        try:
            out: Obj = self.request("GET", resource_path, query=query or None)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return out

    def list(self, resource_path: str, **query: str) -> list[Obj]:
        body = self.request("GET", resource_path, query=query or None)
        items: list[Obj] = body.get("items", [])
        return items

    def create(self, obj: Obj) -> Obj:
        out: Obj = self.request("POST", object_path(obj, collection=True), body=obj)
        return out

    def apply(self, obj: Obj, manager: str) -> Obj:
        out: Obj = self.request(
            "PATCH",
            object_path(obj),
            query={"fieldManager": manager, "force": "true"},
            body=obj,
            content_type=APPLY,
        )
        return out

    def merge_patch(self, resource_path: str, patch: Obj) -> Obj:
        out: Obj = self.request("PATCH", resource_path, body=patch, content_type=MERGE)
        return out


@dataclass
class PoolResult:
    seconds: float
    done: int
    errors: list[str] = field(default_factory=list)


def run_pool(fn: Callable[[Any], object], items: Sequence[Any], workers: int) -> PoolResult:
    """`fn` over `items` with `workers` threads; wall time and the first errors."""
    errors: list[str] = []
    lock = threading.Lock()

    def one(item: Any) -> None:
        try:
            fn(item)
        except Exception as exc:
            with lock:
                if len(errors) < 20:
                    errors.append(f"{type(exc).__name__}: {exc}")

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, items))
    return PoolResult(time.monotonic() - start, len(items), errors)


def create_all(api: Api, objs: Iterable[Obj], workers: int, what: str) -> float:
    """Create every object (an existing one is fine); raise on any other error."""

    def create(obj: Obj) -> None:
        try:
            api.create(obj)
        except ApiError as exc:
            if exc.status != 409:
                raise

    items = list(objs)
    result = run_pool(create, items, workers)
    if result.errors:
        raise RuntimeError(f"creating {what} failed: {result.errors[:3]}")
    return result.seconds


class ConfigMapWatch:
    """A watch on ConfigMaps (server-side label selector) in a thread, recording when each
    (namespace, name) first showed a given value of one data key. Reconnects from the
    last resourceVersion; stops when `stop()` is called (within the read timeout)."""

    def __init__(self, api: Api, selector: str, key: str):
        self.api = api
        self.selector = selector
        self.key = key
        self.seen: dict[tuple[str, str, str], float] = {}
        self.cond = threading.Condition()
        self.errors: list[str] = []
        self._stop = threading.Event()
        listing = api.request(
            "GET", "/api/v1/configmaps", query={"labelSelector": selector, "limit": "1"}
        )
        self.rv: str = listing["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._run, name="cm-watch", daemon=True)

    def start(self) -> ConfigMapWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def wait_for(self, namespace: str, name: str, value: str, timeout: float) -> float | None:
        """Monotonic time the value was first seen, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while (namespace, name, value) not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.seen[(namespace, name, value)]

    def _run(self) -> None:
        attempts = 0
        while not self._stop.is_set() and attempts < 100:
            attempts += 1
            query = {
                "watch": "true",
                "labelSelector": self.selector,
                "resourceVersion": self.rv,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "300",
            }
            try:
                resp = self.api.raw("GET", "/api/v1/configmaps", query=query, timeout=(5, 10))
                self._consume(resp)
            except Exception as exc:  # read timeout on a quiet stream, or a dropped one
                if "timed out" not in str(exc).lower() and len(self.errors) < 20:
                    self.errors.append(f"{type(exc).__name__}: {exc}")

    def _consume(self, resp: Any) -> None:
        buf = b""
        try:
            for chunk in resp.stream(65536, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        self._event(json.loads(line), time.monotonic())
                if self._stop.is_set():
                    return
        finally:
            resp.release_conn()

    def _event(self, event: Obj, at: float) -> None:
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        if meta.get("resourceVersion"):
            self.rv = meta["resourceVersion"]
        if event.get("type") == "ERROR":  # e.g. 410 Gone: relist position from now on
            self.rv = ""
            return
        value = (obj.get("data") or {}).get(self.key)
        if event.get("type") in ("ADDED", "MODIFIED") and value is not None:
            key = (meta.get("namespace", ""), meta.get("name", ""), value)
            with self.cond:
                self.seen.setdefault(key, at)
                self.cond.notify_all()
