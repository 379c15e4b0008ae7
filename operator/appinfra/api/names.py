"""The names every layer shares, declared once: the API group and version, the four
kinds, and the label, annotation and finalizer keys appinfra puts on objects.

Everything from the CRDs to the cache's filters reads these constants; none of
them may be spelled out anywhere else. Renaming one is an API change (see
docs/api.md): users select and alert on these keys.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
"""A Kubernetes object as the API server sends it: plain JSON, never model classes."""

GROUP = "appinfra.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

PLURALS = {
    "ServiceProfile": "serviceprofiles",
    "SecretBinding": "secretbindings",
    "HealthPolicy": "healthpolicies",
    "RateLimitPolicy": "ratelimitpolicies",
}
KINDS = tuple(PLURALS)
"""The appinfra kinds, in the order status, docs and the CLI list them."""

# --- labels on every object appinfra creates (children) -----------------------------
MANAGED_BY = "app.kubernetes.io/managed-by"
"""Label with value `appinfra` on every object appinfra creates (a child). It proves
nothing by itself (anyone can copy it): ownership goes by the controller ownerReference."""
MANAGED_BY_US = "appinfra"
MANAGED_SELECTOR = f"{MANAGED_BY}={MANAGED_BY_US}"
"""The label selector of appinfra's children; the operator lists and watches with it."""
OWNER_KIND = f"{GROUP}/owner-kind"
"""Label on a child: the kind of the appinfra resource it was made for."""
OWNER_NAME = f"{GROUP}/owner-name"
"""Label on a child: the name of the appinfra resource it was made for (hence names of at
most 63 characters)."""

# --- on appinfra's own resources -----------------------------------------------------
FINALIZER = f"{GROUP}/release"
"""Held while a target carries fields this resource wrote, so they are released first."""
REVOKE_FINALIZER = f"{GROUP}/revoke"
"""Held by a SecretBinding with pki or dynamic and revokeOnDelete: its certificate or lease
is revoked at the store before the binding (and so its Secret) goes."""
TARGET_CLAIM = f"{GROUP}/target"
"""`<Kind>/<name>` of the target whose fields the resource wrote."""

# --- on Secrets a pki or dynamic SecretBinding writes ----------------------------------
ISSUED_FOR = f"{GROUP}/issued-for"
"""Hash of the request (pki or dynamic section) the Secret's certificate or credentials
were issued for: a changed request issues anew, anything else (a restart) does not."""
LEASE_ID_KEY = ".appinfra-lease-id"
"""Data key of the lease id in a dynamic binding's Secret: the lease survives restarts
there, next to the credentials it governs (status shows only its hash)."""

# --- on objects others own --------------------------------------------------------------
MERGE_OPT_IN = f"{GROUP}/merge-from"
"""On a Secret appinfra did not create: the SecretBindings (comma-separated names, same
namespace) its owner lets write their keys into it with creationPolicy Merge."""
APPLIED_ANNOTATION = f"{GROUP}/applied"
"""Hash of what appinfra last applied to a child (see kube/diff.py): a reconcile with
nothing changed compares it and sends no write."""
CONFIG_HASH = f"{GROUP}/config-hash"
"""Pod-template annotation on a ServiceProfile's target (rolloutOnChange): a hash of the
rendered config, so a change rolls the pods."""
SECRET_HASH = f"{GROUP}/secret-hash"
"""Pod-template annotation on a SecretBinding's target (rolloutOnChange): an HMAC of the
synced data, so a change rolls the pods without revealing values."""


def target_annotation(kind: str) -> str:
    """`appinfra.dev/<kind>` on a target: which resource of `kind` shapes it."""
    return f"{GROUP}/{kind.lower()}"


def applied_annotation(kind: str) -> str:
    """`appinfra.dev/applied-<kind>`: the hash of what `kind` applied to a target."""
    return f"{GROUP}/applied-{kind.lower()}"


def field_manager(kind: str) -> str:
    """The server-side apply field manager of `kind`'s writes: `appinfra-<kind>`."""
    return f"appinfra-{kind.lower()}"
