"""Which bindings may read what from a store: checked before any backend call.

The cluster admin owns the stores; a namespace owner only owns bindings. These
rules (allowedNamespaces, keyPrefix) are what keeps one team's binding from
reading another team's secrets through the operator's own, broader credentials.
"""

from __future__ import annotations

from appinfra.api.operatorconfig import SecretStore

_UNSAFE_CHARACTERS = "%?#\\"
"""Characters that could change which path a Vault URL addresses (escapes, a query, a
fragment) after the prefix check; none of them is legal in an AWS secret or parameter name."""


def access_problem(store_name: str, store: SecretStore, namespace: str, key: str) -> str | None:
    """Why a binding in `namespace` may not read `key` from the store, or None if it may.

    The message names the rule so the admin or the binding's owner knows what to change.
    """
    if not store.allowed_namespaces:
        return f"store {store_name!r} allows no namespaces (its allowedNamespaces is empty)"
    if not store.allows_namespace(namespace):
        globs = ", ".join(store.allowed_namespaces)
        return (
            f"store {store_name!r} does not allow namespace {namespace!r} "
            f"(allowedNamespaces: {globs})"
        )
    prefix = store.key_prefix_for(namespace)
    if not key.startswith(prefix):
        return (
            f"key {key!r} is outside store {store_name!r}'s keyPrefix: keys of bindings in "
            f"namespace {namespace!r} must start with {prefix!r}"
        )
    if any(segment in (".", "..") for segment in key.split("/")):
        return f"key {key!r} must not contain '.' or '..' path segments"
    unsafe = sorted({char for char in key if char in _UNSAFE_CHARACTERS})
    if unsafe:
        return f"key {key!r} must not contain {' or '.join(map(repr, unsafe))}"
    return None
