"""A small, typed JSON client over the kubernetes package's HTTP plumbing.

Why not the generated API classes: they turn every object into model instances
and back (slow at thousands of objects) and have no server-side apply. Here every
object is a plain dict, every request is counted by verb (the zero-writes-on-resync
guarantee is measured with this counter), and errors carry the API server's message.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import urllib3
from kubernetes import client, config
from prometheus_client import Counter

from appinfra.api.names import Obj
from appinfra.kube.resources import Resource
from appinfra.kube.writegate import WRITES

# Every request is counted (a metric of the operator's own; tests count at the API server).
API_REQUESTS = Counter(
    "appinfra_api_requests_total",
    "Requests the operator sent to the Kubernetes API server, by verb and resource.",
    ["verb", "resource"],
)

log = logging.getLogger(__name__)

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
# Field manager of our non-apply writes (status, finalizers, Events): named, so that
# managedFields show who wrote, instead of the HTTP client's user agent.
UPDATE_MANAGER = "appinfra"
RELABEL_ATTEMPTS = 5  # see create_applied
# etcd revisions (resourceVersions) are int64: none can equal this uint64, so an apply
# carrying it as a precondition passes only when there is no object (create_applied).
UNMATCHABLE_VERSION = str(2**64 - 1)


class KubeError(Exception):
    """An API error with the server's own reason and message (safe to show users)."""

    def __init__(self, status: int, reason: str, message: str):
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}: {message}")
        self.message = message
        # Set once a handler has put this failure in the resource's status, so the
        # runtime's catch-all report does not overwrite that more specific message.
        self.reported = False

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def invalid(self) -> bool:
        """The server refused the object itself (too large, schema): retrying the same
        request cannot help; only a change to the spec can."""
        return self.status in (400, 413, 422)


def load_api_client(pool_size: int = 32) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    cfg = client.Configuration.get_default_copy()
    # One connection per worker thread plus the background posters, or urllib3 discards
    # and reopens connections ("Connection pool is full") under load.
    cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(cfg)


class Kube:
    def __init__(self, api: client.ApiClient, timeout: float = 30):
        self.api = api
        self.timeout = timeout
        # Create children with one preconditioned apply (create_applied) until the server
        # shows it does not support that; then with a POST and a relabel.
        self.create_only_apply = True

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        resource: str = "",
    ) -> Any:
        refused = WRITES.refusal(method, path)  # closed while this replica may not lead
        if refused is not None:
            raise KubeError(0, "NotLeader", refused)
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        API_REQUESTS.labels(method, resource or path.rsplit("/", 2)[-2]).inc()
        try:
            resp = self._send(
                method, path, query, data, {"Content-Type": content_type},
                timeout=urllib3.Timeout(total=self.timeout),
            )  # fmt: skip
        except urllib3.exceptions.SSLError as exc:
            raise KubeError(0, "SSLError", str(exc)) from None
        if not 200 <= resp.status < 300:
            raise _error(resp.status, resp.data)
        return json.loads(resp.data) if resp.data else None

    def stream(
        self, path: str, query: dict[str, str], read_timeout: float, resource: str,
        verb: str = "WATCH",
    ) -> Any:  # fmt: skip
        """A GET whose body is read as it arrives (a watch, or a LIST read item by item):
        the urllib3 response. Counted as `verb`. The caller reads it and calls
        release_conn()."""
        API_REQUESTS.labels(verb, resource).inc()
        resp = self._send(
            "GET", path, query, None, {},
            timeout=urllib3.Timeout(connect=self.timeout, read=read_timeout), stream=True,
        )  # fmt: skip
        if resp.status != 200:
            data = resp.read()
            resp.release_conn()
            raise _error(resp.status, data)
        return resp

    def _send(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: bytes | None,
        headers: dict[str, str],
        *,
        timeout: urllib3.Timeout,
        stream: bool = False,
    ) -> Any:
        """One request on the ApiClient's connection pool. The ApiClient gives the URL
        and the credentials (refreshing expiring ones); bodies are encoded by the caller,
        once: the ApiClient's generic path walked every body (sanitize_for_serialization)
        and wrapped every response, measurable at thousands of requests."""
        _, url, headers, _, _ = self.api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params={"Accept": "application/json", **headers},
            auth_settings=["BearerToken"],
        )
        return self.api.rest_client.pool_manager.request(
            method, url, body=body, headers=headers, timeout=timeout, preload_content=not stream
        )

    def get(self, res: Resource, namespace: str, name: str) -> Obj | None:
        try:
            obj: Obj = self.request("GET", res.path(namespace, name), resource=res.plural)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise
        return obj

    def list_namespace(self, res: Resource, namespace: str, page: int = 500) -> list[Obj]:
        """Every object of `res` in `namespace`, read in pages of `page` (for a type no
        watch covers, read only when needed: the Services a ServiceMonitor may go through)."""
        items: list[Obj] = []
        query = {"limit": str(page)}
        while True:
            out = self.request("GET", res.path(namespace), query=query, resource=res.plural)
            items.extend(out.get("items") or [])
            token = (out.get("metadata") or {}).get("continue")
            if not token:
                return items
            query = {"limit": str(page), "continue": token}

    def apply(self, res: Resource, obj: Obj, manager: str, *, subresource: str = "") -> Obj:
        """Server-side apply `obj` as `manager`, taking ownership of conflicting fields.

        force=true because these fields are ours by contract (the user asked appinfra
        to manage them); the other manager keeps every field we do not set.
        """
        meta = obj["metadata"]
        out: Obj = self.request(
            "PATCH",
            res.path(meta.get("namespace"), meta["name"], subresource),
            query={"fieldManager": manager, "force": "true"},
            body=obj,
            content_type=APPLY,
            resource=res.plural,
        )
        return out

    def merge_patch(
        self, res: Resource, namespace: str, name: str, patch: Obj, *, subresource: str = ""
    ) -> Obj:
        out: Obj = self.request(
            "PATCH",
            res.path(namespace, name, subresource),
            query={"fieldManager": UPDATE_MANAGER},
            body=patch,
            content_type=MERGE,
            resource=res.plural,
        )
        return out

    def create(self, res: Resource, namespace: str, obj: Obj) -> Obj:
        out: Obj = self.request(
            "POST",
            res.path(namespace),
            query={"fieldManager": UPDATE_MANAGER},
            body=obj,
            resource=res.plural,
        )
        return out

    def create_applied(self, res: Resource, obj: Obj, manager: str) -> Obj:
        """Create `obj`, never touching an existing one (KubeError, AlreadyExists), with
        its fields owned by `manager` as if it had applied them.

        A plain server-side apply would create too, but it also takes over an object
        someone made in the meantime. With a resourceVersion no stored object can have,
        the apply is a precondition that only an absent object passes: the API server
        creates it (fields under an Apply entry, one request) or refuses with 409.
        """
        meta = obj["metadata"]
        if self.create_only_apply:
            guarded = {**obj, "metadata": {**meta, "resourceVersion": UNMATCHABLE_VERSION}}
            try:
                return self.apply(res, guarded, manager)
            except KubeError as exc:
                if not (exc.conflict or exc.not_found):
                    raise
                if exc.conflict and self.get(res, meta["namespace"], meta["name"]) is not None:
                    raise KubeError(409, "AlreadyExists", exc.message) from exc
            # 404 (its namespace is gone, or a server that wants the object to exist) or
            # 409 for an absent object: a POST says which, and creates it if it can.
            out = self._post_and_relabel(res, obj, manager)
            # The POST created it: this server does not create on a preconditioned apply.
            self.create_only_apply = False
            log.warning(
                "the API server did not create %s %s/%s with a preconditioned apply; "
                "creating with POST and a relabel from now on",
                res.kind,
                meta["namespace"],
                meta["name"],
            )
            return out
        return self._post_and_relabel(res, obj, manager)

    def _post_and_relabel(self, res: Resource, obj: Obj, manager: str) -> Obj:
        """`create_applied` for a server that does not create on a preconditioned apply.

        A POST records its fields under an *Update* entry, which a later apply by the same
        manager does not replace: fields the intent drops later would stay, owned by that
        entry. Relabelling the entry as Apply makes the first apply set exactly what was
        created (one extra write)."""
        meta = obj["metadata"]
        out: Obj = self.request(
            "POST",
            res.path(meta["namespace"]),
            query={"fieldManager": manager},
            body=obj,
            resource=res.plural,
        )
        # The relabel is conditional on the resourceVersion (it replaces the whole list),
        # and a controller often writes a new object's status at once (the disruption
        # controller a PDB's, the HPA controller an HPA's): then read it again and retry.
        # Giving up would leave the Update entry, and a field dropped later would stay.
        for attempt in range(RELABEL_ATTEMPTS):
            try:
                return self._relabel_as_applied(res, out, manager)
            except KubeError as exc:
                if not exc.conflict or attempt == RELABEL_ATTEMPTS - 1:
                    raise
            fresh = self.get(res, meta["namespace"], meta["name"])
            if fresh is None or fresh["metadata"].get("uid") != out["metadata"].get("uid"):
                return out  # deleted (or replaced) meanwhile: nothing of ours to relabel
            out = fresh
        return out

    def _relabel_as_applied(self, res: Resource, live: Obj, manager: str) -> Obj:
        """`live` with `manager`'s Update entry marked Apply (unchanged if it has none)."""
        meta = live["metadata"]
        entries = meta.get("managedFields") or []
        relabelled = [
            {**e, "operation": "Apply"}
            if e.get("manager") == manager and e.get("operation") == "Update"
            else e
            for e in entries
        ]
        if relabelled == entries:
            return live
        patch = {
            "metadata": {"managedFields": relabelled, "resourceVersion": meta["resourceVersion"]}
        }
        return self.merge_patch(res, meta["namespace"], meta["name"], patch)

    def delete(self, res: Resource, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete; with `uid`, only that incarnation (never a same-named newcomer)."""
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", res.path(namespace, name), body=body, resource=res.plural)
        except KubeError as exc:
            if exc.not_found:
                return False
            raise
        return True


def _error(status: int, body: Any) -> KubeError:
    """Build a KubeError from a metav1.Status body (or whatever the server sent)."""
    try:
        data = json.loads(body) if isinstance(body, (str, bytes)) else {}
    except ValueError:
        data = {}
    reason = str(data.get("reason") or "Error")
    message = str(data.get("message") or (body.decode() if isinstance(body, bytes) else body))
    return KubeError(status, reason, message)
