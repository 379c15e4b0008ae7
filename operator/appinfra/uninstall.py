"""`appinfra uninstall`: undo what ownership cannot, once the operator is gone for good.

Children go with their resources through garbage collection; what is left are our
fields on targets we do not own (probes, envFrom, annotations) and the finalizer
that waits to release them. Without a running operator that finalizer would hold
namespace and CRD deletion for ever, so this releases both, resource by resource.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from appinfra.api.names import FINALIZER, REVOKE_FINALIZER, Obj
from appinfra.api.operatorconfig import OperatorConfig
from appinfra.controller import Runtime
from appinfra.handlers import CONTROLLERS
from appinfra.kube.client import Kube
from appinfra.kube.credentials import provider_kube
from appinfra.kube.resources import Resource
from appinfra.providers.registry import Providers


def _listed(kube: Kube, res: Resource, namespace: str | None) -> Iterator[Obj]:
    query = {"limit": "250"}
    while True:
        page = kube.request("GET", res.path(namespace), query=query, resource=res.plural)
        for item in page.get("items") or []:
            yield {**item, "kind": res.kind, "apiVersion": res.api_version}
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return
        query = {"limit": "250", "continue": token}


def uninstall(kube: Kube, namespaces: Sequence[str] = ()) -> list[str]:
    """Release every target field and finalizer of appinfra's resources in `namespaces`
    (every namespace when empty). Returns `<Kind> <namespace>/<name>` of each released."""
    rt = Runtime(kube, Providers(OperatorConfig(), provider_kube(kube)))
    released = []
    for controller in CONTROLLERS:
        res = controller.resource
        scopes: Sequence[str | None] = namespaces or [None]
        for namespace in scopes:
            for body in _listed(kube, res, namespace):
                meta = body["metadata"]
                if FINALIZER in (meta.get("finalizers") or []):
                    if controller.before_release is not None:
                        controller.before_release(rt, body)  # e.g. HealthPolicy's hand-back
                    rt.release_target(res, body)
                    released.append(f"{res.kind} {meta['namespace']}/{meta['name']}")
                if REVOKE_FINALIZER in (meta.get("finalizers") or []):
                    # No operator is left to revoke: the certificate or lease runs out.
                    _drop_revoke_finalizer(kube, res, meta["namespace"], meta["name"])
                    released.append(f"{res.kind} {meta['namespace']}/{meta['name']} (not revoked)")
    return released


def _drop_revoke_finalizer(kube: Kube, res: Resource, namespace: str, name: str) -> None:
    fresh = kube.get(res, namespace, name)
    if fresh is None:
        return
    meta = fresh["metadata"]
    keep = [f for f in meta.get("finalizers") or [] if f != REVOKE_FINALIZER]
    patch = {"metadata": {"finalizers": keep, "resourceVersion": meta["resourceVersion"]}}
    kube.merge_patch(res, namespace, name, patch)
