"""Who may write an object: the tenant rule in one place.

appinfra is shared by every namespace, so a resource may change only what appinfra
created for it. These predicates decide that from the live object alone; the
runtime calls them before every write of a child or a Secret.
"""

from __future__ import annotations

from appinfra.api.names import API_VERSION, MERGE_OPT_IN, Obj

# Secrets whose content belongs to Kubernetes or to another tool: never merged into,
# whatever their annotations say.
PROTECTED_SECRET_TYPES = frozenset(
    {
        "kubernetes.io/service-account-token",
        "bootstrap.kubernetes.io/token",
        "helm.sh/release.v1",
    }
)


def controller_uid(obj: Obj | None) -> str | None:
    """The uid of the appinfra resource that controls `obj`, if one does."""
    for ref in (obj or {}).get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("apiVersion") == API_VERSION:
            return str(ref.get("uid") or "") or None
    return None


def controlled_by(obj: Obj | None, uid: str) -> bool:
    return bool(uid) and controller_uid(obj) == uid


def merge_allowed(secret: Obj, binding: str) -> bool:
    """Its owner named `binding` in the opt-in annotation, and the type is not protected."""
    if secret.get("type") in PROTECTED_SECRET_TYPES:
        return False
    annotations = secret.get("metadata", {}).get("annotations") or {}
    allowed = {n.strip() for n in str(annotations.get(MERGE_OPT_IN, "")).split(",")}
    return binding in allowed


def describe(obj: Obj) -> str:
    return f"{obj.get('kind', 'object')} {obj.get('metadata', {}).get('name', '')}"
