"""SecretBinding: fetched remote secrets -> the target Secret's data, and its HMAC.

Pure. Error messages name keys, properties and templates, never values.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from appinfra.api.names import GROUP, SECRET_HASH, Obj
from appinfra.api.secretbinding import MAX_SYNCED_KEYS, SecretBindingSpec
from appinfra.providers.base import RemoteSecret
from appinfra.render.common import Owner, child, target_intent
from appinfra.render.templates import render_template

MAX_DEPTH = 32  # deeper JSON is refused rather than walked (a hostile secret is data too)


class ExtractError(ValueError):
    """A property the binding asks for is not in the remote secret (message is value-free)."""


class TooManyKeys(ExtractError):
    """The Secret would hold more keys than a binding may sync (status.syncedKeys lists
    every key and the API server refuses a longer list): refused before any write."""


def _check_key_count(count: int, where: str) -> None:
    if count > MAX_SYNCED_KEYS:
        raise TooManyKeys(
            f"{where}: {count:,} keys, more than the {MAX_SYNCED_KEYS:,} a binding may sync; "
            "narrow dataFrom"
        )


def applied_annotation(binding: str) -> str:
    """The Secret annotation key holding this binding's applied-content hash.

    Always a valid qualified name (the part after "/" at most 63 characters, starting and
    ending alphanumeric) and distinct per binding: `sb.<name>` when it fits, otherwise a
    prefix of the name joined by "-" to a digest of the whole name.
    """
    if len(binding) <= 60:
        return f"{GROUP}/sb.{binding}"
    digest = hashlib.sha256(binding.encode()).hexdigest()[:8]
    return f"{GROUP}/sb.{binding[:51]}-{digest}"


@dataclass(frozen=True)
class Fetch:
    """One remote read a binding needs; identical ones are shared across bindings."""

    key: str
    version: int | None = None


def fetches(spec: SecretBindingSpec) -> list[Fetch]:
    """The distinct remote reads, in first-use order."""
    wanted = [Fetch(d.remote_ref.key, d.remote_ref.version) for d in spec.data]
    wanted += [Fetch(d.extract.key, d.extract.version) for d in spec.data_from]
    return list(dict.fromkeys(wanted))


def lifetime_key(spec: SecretBindingSpec) -> str | None:
    """The store path a pki or dynamic binding sends its requests to, checked against the
    store's keyPrefix like a KV key: <mount>/issue/<role> for pki, the path for dynamic."""
    if spec.pki is not None:
        return f"{spec.pki.mount}/issue/{spec.pki.role}"
    if spec.dynamic is not None:
        return spec.dynamic.path
    return None


def checked_keys(spec: SecretBindingSpec) -> list[str]:
    """Every path of the store the binding touches, for the access rules."""
    key = lifetime_key(spec)
    return [f.key for f in fetches(spec)] + ([key] if key else [])


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth, counted iteratively so a deep document cannot exhaust the stack."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        stack.extend((c, depth + 1) for c in children)
    return deepest


def _properties(secret: RemoteSecret, where: str) -> dict[str, Any]:
    props = secret.properties
    if props is None and secret.raw is not None:
        try:
            parsed = json.loads(secret.raw)
        except RecursionError:
            raise ExtractError(f"{where}: the remote secret nests too deeply to parse") from None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        props = parsed if isinstance(parsed, dict) else None
    if props is None:
        raise ExtractError(f"{where}: the remote secret is a single value, not a JSON object")
    if _depth(props) > MAX_DEPTH:
        raise ExtractError(f"{where}: the remote secret nests deeper than {MAX_DEPTH} levels")
    return props


def extract(secret: RemoteSecret, prop: str | None, where: str) -> str:
    """The value for one data entry: the whole secret, or a (dotted, nested) property."""
    if prop is None:
        if secret.raw is not None:
            return _as_text(secret.raw)
        return _as_text(_properties(secret, where))
    node: Any = _properties(secret, where)
    if prop in node:  # a literal key with dots wins over a nested path
        return _as_text(node[prop])
    for part in prop.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ExtractError(f"{where}: property {prop!r} not found in the remote secret")
        node = node[part]
    return _as_text(node)


def secret_data(
    spec: SecretBindingSpec, fetched: Mapping[Fetch, RemoteSecret], *, tenant: str = ""
) -> dict[str, str]:
    """The target Secret's data: data entries, dataFrom extracts, then the template,
    rendered as `tenant` (the binding's namespace: the template workers take turns by
    tenant, so that one namespace's slow templates delay only its own renders).

    Raises ExtractError (TooManyKeys past MAX_SYNCED_KEYS) or TemplateError; never returns
    partial data.
    """
    out: dict[str, str] = {}
    for index, item in enumerate(spec.data_from):
        where = f"spec.dataFrom[{index}].extract ({item.extract.key})"
        props = _properties(fetched[Fetch(item.extract.key, item.extract.version)], where)
        _check_key_count(len(props), where)  # before copying a huge secret's values
        out.update({name: _as_text(value) for name, value in props.items()})
        _check_key_count(len(out), "spec.dataFrom")
    for index, entry in enumerate(spec.data):
        where = f"spec.data[{index}].remoteRef ({entry.remote_ref.key})"
        remote = fetched[Fetch(entry.remote_ref.key, entry.remote_ref.version)]
        out[entry.secret_key] = extract(remote, entry.remote_ref.property, where)
    template = spec.target.template
    templated = template.data.keys() if template is not None else set()
    # data and template keys add to what dataFrom brought; the limit is on the Secret, and
    # checked before any template renders.
    _check_key_count(
        len(out.keys() | templated), "spec.dataFrom, spec.data and spec.target.template.data"
    )
    if template is not None and template.data:
        rendered = {
            key: render_template(f"spec.target.template.data.{key}", source, out, tenant=tenant)
            for key, source in template.data.items()
        }
        out.update(rendered)
    return out


def secret_hmac(data: Mapping[str, str], key: str) -> str:
    """HMAC-SHA256 of the data: shows that a value changed without making it guessable.

    The key is the target Secret's UID: random, and visible only to those allowed to
    read that Secret (who can read the values anyway), while the HMAC itself goes on
    pod templates and in status, which many more people can read.
    """
    mac = hmac.new(key.encode(), digestmod=hashlib.sha256)
    for name in sorted(data):
        mac.update(name.encode() + b"\0" + data[name].encode("utf-8", "surrogateescape") + b"\0")
    return mac.hexdigest()


def target_name(spec: SecretBindingSpec, binding: str) -> str:
    return spec.target.name or binding


def render_secret(
    owner: Owner,
    spec: SecretBindingSpec,
    data: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> Obj:
    """The Secret intent. With creationPolicy Merge: only our keys and no ownership.
    `annotations`: appinfra's own (pki and dynamic: what the data was issued for)."""
    encoded = {
        k: base64.b64encode(v.encode("utf-8", "surrogateescape")).decode() for k, v in data.items()
    }
    name = target_name(spec, owner.name)
    template = spec.target.template
    if spec.target.creation_policy == "Merge":
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": owner.namespace},
            "data": encoded,
        }
    kind = "kubernetes.io/tls" if spec.pki is not None else spec.target.type
    obj = child(owner, "v1", "Secret", name, type=kind, data=encoded)
    meta = obj["metadata"]
    if spec.target.creation_policy == "Orphan":
        meta.pop("ownerReferences", None)
    if template is not None:
        meta["labels"] = {**template.labels, **meta["labels"]}
        if template.annotations:
            meta["annotations"] = dict(template.annotations)
    if annotations:
        meta["annotations"] = {**meta.get("annotations", {}), **annotations}
    return obj


def render_consumer(owner: Owner, deployment: str, digest: str | None) -> Obj:
    """The consumer Deployment's apply intent: our annotation and, if asked, the HMAC."""
    spec = None
    if digest is not None:
        spec = {"template": {"metadata": {"annotations": {SECRET_HASH: digest}}}}
    return target_intent(owner, deployment, spec)
