"""`appinfra render` for a SecretBinding: the reconciler's steps (store known, access
rules, render, write, roll out) with every remote read replaced by a placeholder.

Stores are never contacted. Each value is a deterministic, clearly marked placeholder
naming where it would come from, `<from STORE: KEY#PROPERTY>`, and templates render
over those placeholders, so the Secret shows its keys and shape, never a value.
"""

from __future__ import annotations

import jinja2
from jinja2 import meta

from appinfra.api.kinds import SECRET_BINDING
from appinfra.api.names import LEASE_ID_KEY, MERGE_OPT_IN, SECRET_HASH, Obj, field_manager
from appinfra.api.secretbinding import SecretBindingSpec
from appinfra.api.validation import parse_spec
from appinfra.providers.access import access_problem
from appinfra.providers.base import RemoteSecret
from appinfra.render import messages
from appinfra.render.common import Owner
from appinfra.render.offline_inputs import Inputs, Outcome, Written
from appinfra.render.secretbinding import (
    ExtractError,
    Fetch,
    TooManyKeys,
    checked_keys,
    fetches,
    lifetime_key,
    render_consumer,
    render_secret,
    secret_data,
    target_name,
)
from appinfra.render.templates import TemplateError, render_template

HMAC_PLACEHOLDER = "<HMAC of the Secret's data, computed at each sync>"
PLACEHOLDER_NOTE = (
    "secret values are placeholders (<from STORE: KEY#PROPERTY>): no store is contacted"
)


def placeholder(store: str, key: str, prop: str | None = None, version: int | None = None) -> str:
    """The stand-in for one remote value: where it comes from, never what it is."""
    where = key if prop is None else f"{key}#{prop}"
    if version:  # 0 and unset both mean the latest
        where += f" (version {version})"
    return f"<from {store}: {where}>"


def template_names(spec: SecretBindingSpec) -> set[str]:
    """Variables the Secret's templates read. A template that does not parse reads
    none here; rendering it reports the error the operator would."""
    template = spec.target.template
    if template is None:
        return set()
    env = jinja2.Environment(autoescape=False)  # parsing only, never rendering
    names: set[str] = set()
    for source in template.data.values():
        try:
            names |= meta.find_undeclared_variables(env.parse(source))
        except jinja2.TemplateSyntaxError:
            continue
    return names


def placeholder_reads(spec: SecretBindingSpec) -> dict[Fetch, RemoteSecret]:
    """What every read would return, as placeholders. A remote secret holds the
    properties `data` asks of it; one read by dataFrom also holds every name a template
    reads that no `data` entry provides (it can only come from there), so templates
    render. Its other properties are unknown offline."""
    store = spec.store
    properties: dict[Fetch, dict[str, str]] = {read: {} for read in fetches(spec)}
    for entry in spec.data:
        ref = entry.remote_ref
        if ref.property is not None:
            read = Fetch(ref.key, ref.version)
            properties[read][ref.property] = placeholder(store, ref.key, ref.property, ref.version)
    from_data_from = sorted(template_names(spec) - {entry.secret_key for entry in spec.data})
    for item in spec.data_from:
        ref_key, version = item.extract.key, item.extract.version
        for name in from_data_from:
            properties[Fetch(ref_key, version)].setdefault(
                name, placeholder(store, ref_key, name, version)
            )
    return {
        read: RemoteSecret(
            properties=props,
            raw=placeholder(store, read.key, None, read.version).encode(),
            version=None,
            read_at=0.0,
        )
        for read, props in properties.items()
    }


def lifetime_placeholders(spec: SecretBindingSpec) -> tuple[dict[str, str], list[str]]:
    """pki and dynamic: the Secret's keys with placeholders for what the store would issue,
    and notes on what offline rendering cannot know."""
    store, path = spec.store, lifetime_key(spec) or ""
    if spec.pki is not None:
        pki = spec.pki
        sans = ", ".join([pki.common_name, *pki.alt_names, *pki.ip_sans])
        data = {
            "tls.crt": f"<issued by {store}: {path}: certificate for {sans}, then its chain>",
            "tls.key": f"<issued by {store}: {path}: the certificate's private key>",
            "ca.crt": f"<issued by {store}: {path}: the issuing CA>",
        }
        when = (
            f"{pki.renew_before} before notAfter"
            if pki.renew_before
            else f"at {pki.renew_percent}% of its lifetime"
        )
        note = f"pki: renewed {when} (jittered per binding)"
        if spec.target_ref is not None and spec.rollout_on_change:
            note += f", each renewal rolling out Deployment {spec.target_ref.name}"
        return data, [note]
    dynamic = spec.dynamic
    assert dynamic is not None
    fields = sorted(template_names(spec))
    data = {name: f"<issued by {store}: {path}#{name}>" for name in fields}
    data[LEASE_ID_KEY] = f"<lease id from {store}: {path}>"
    note = (
        f"dynamic: every field of the data {path} returns becomes a key (only those the "
        f"templates read are shown); the lease is renewed at {dynamic.renew_percent}% of its "
        "duration and issued anew at its max TTL"
    )
    return data, [note]


def _store_problem(
    spec: SecretBindingSpec, namespace: str, inputs: Inputs
) -> tuple[str, str] | None:
    """The operator's admission check and access rules, against the given configuration."""
    stores = inputs.config.secret_stores
    if spec.store not in stores:
        return "Invalid", messages.store_not_configured(spec.store, sorted(stores))
    for key in checked_keys(spec):
        refused = access_problem(spec.store, stores[spec.store], namespace, key)
        if refused:
            return "Forbidden", refused
    return None


def _secret(owner: Owner, spec: SecretBindingSpec, data: dict[str, str]) -> Written:
    """The Secret as the operator writes it, its values shown as readable `stringData`
    (the operator sends the same strings base64-encoded as `data`)."""
    rendered = render_secret(owner, spec, data)
    obj = {k: v for k, v in rendered.items() if k != "data"}
    obj["stringData"] = dict(sorted(data.items()))
    policy = spec.target.creation_policy
    manager = f"{field_manager(owner.kind)}/{owner.name}"
    how = {
        "Owner": "created and owned (deleted with the binding)",
        "Orphan": "created without an ownerReference (creationPolicy Orphan: it outlives "
        "the binding)",
        "Merge": f"only these keys, applied into the existing Secret as {manager} "
        "(creationPolicy Merge)",
    }[policy]
    return Written(obj, how)


def render_secretbinding(doc: Obj, owner: Owner, inputs: Inputs) -> Outcome:
    out = Outcome()
    spec, problems = parse_spec(SECRET_BINDING, doc)
    if spec is None:
        return out.fail("Invalid", "; ".join(map(str, problems)))
    if inputs.config_given:
        problem = _store_problem(spec, owner.namespace, inputs)
        if problem is not None:
            return out.fail(*problem)
    else:
        out.notes.append(
            f"no --config given: whether store {spec.store!r} exists and allows these keys "
            "in this namespace is not checked"
        )
    try:
        if spec.pki is not None or spec.dynamic is not None:
            data, notes = lifetime_placeholders(spec)
            out.notes.extend(notes)
            template = spec.target.template
            for key, source in (template.data if template is not None else {}).items():
                where = f"spec.target.template.data.{key}"
                data[key] = render_template(where, source, data, tenant=owner.namespace)
        else:
            data = secret_data(spec, placeholder_reads(spec), tenant=owner.namespace)
    except TooManyKeys as exc:
        return out.fail("TooManyKeys", str(exc))
    except ExtractError as exc:
        return out.fail("SecretNotFound", str(exc))
    except TemplateError as exc:
        return out.fail("TemplateError", str(exc))
    secret = target_name(spec, owner.name)
    for index, item in enumerate(spec.data_from):
        out.notes.append(
            f"spec.dataFrom[{index}] ({item.extract.key}): every property of the remote "
            f"secret becomes a key of Secret {secret}; only those the templates read are shown"
        )
    if spec.target.creation_policy == "Merge":
        out.notes.append(
            f"creationPolicy Merge: Secret {secret} must exist and its owner must annotate it "
            f"{MERGE_OPT_IN}: {owner.name} (not checked offline)"
        )
    out.written.append(_secret(owner, spec, data))
    if spec.target_ref is None:
        return out
    consumer = spec.target_ref.name
    if inputs.find("Deployment", owner.namespace, consumer) is None:
        return out.fail("TargetNotFound", messages.consumer_not_found(consumer))
    digest = HMAC_PLACEHOLDER if spec.rollout_on_change else None
    intent = render_consumer(owner, consumer, digest)
    how = f"server-side apply as {field_manager(owner.kind)}"
    if digest is not None:
        how += f"; {SECRET_HASH} is an HMAC of the data, a placeholder here"
    out.written.append(Written(intent, how))
    return out
