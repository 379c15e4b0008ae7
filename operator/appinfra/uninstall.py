"""`appinfra uninstall`: undo what ownership cannot, once the operator is gone for good.

Children go with their resources through garbage collection; what is left are our
fields on targets we do not own (probes, envFrom, annotations) and the finalizer
that waits to release them. Without a running operator that finalizer would hold
namespace and CRD deletion for ever, so this releases both, resource by resource.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from appinfra.api.names import FINALIZER, Obj
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
    return released
