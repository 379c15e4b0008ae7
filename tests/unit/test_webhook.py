"""The admission webhook's parts that need no API server: its template message is the
render's, its handler allows what it cannot decide and judges only spec changes, and
`appinfra run` refuses a webhook port without certificates. The checks themselves run
against the real API server in tests/e2e/test_webhook.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest

from appinfra import webhook
from appinfra.render.templates import TemplateError, compile_problem, render_here
from appinfra.runner import run_operator
from appinfra.webhook_checks import Verdict

BROKEN = ["{{ password", "a\n{% if x %}no end", "{% for %}", "{{ x | }}"]


@pytest.mark.parametrize("source", BROKEN)
def test_a_template_that_does_not_compile_gets_the_renders_message(source: str) -> None:
    with pytest.raises(TemplateError) as raised:
        render_here("spec.target.template.data.url", source, {})
    assert compile_problem("spec.target.template.data.url", source) == str(raised.value)


def test_a_template_that_compiles_is_not_judged_on_values() -> None:
    # Undefined names, a failing filter: only the render, with the real values, can tell.
    assert compile_problem("f", "{{ missing.attr | int }} {{ 1 / 0 }}") is None


def _handler(rt: Any) -> Any:
    registry = kopf.OperatorRegistry()
    webhook.register(registry, lambda: rt)
    handlers = registry._webhooks.get_all_handlers()
    assert {h.id for h in handlers} == {webhook.WEBHOOK_ID}
    return handlers[0].fn


BODY = {"kind": "SecretBinding", "metadata": {"name": "b", "namespace": "n"}, "spec": {"x": 1}}


def _call(fn: Any, old: Any = None, body: Any = None) -> list[str]:
    warnings: list[str] = []
    asyncio.run(fn(body=kopf.Body(body or BODY), warnings=warnings, old=old))
    return warnings


def test_the_handler_denies_with_the_checks_message_and_passes_its_warnings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fn = _handler(object())
    denial = Verdict("store 'x' is not configured", ["rival"])
    monkeypatch.setitem(webhook.CHECKS, "SecretBinding", lambda rt, body: denial)
    with pytest.raises(kopf.AdmissionError, match="store 'x' is not configured"):
        _call(fn)
    monkeypatch.setitem(webhook.CHECKS, "SecretBinding", lambda rt, body: Verdict(None, ["rival"]))
    assert _call(fn) == ["rival"]


def test_the_handler_allows_what_it_cannot_decide(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(rt: Any, body: Any) -> Verdict:
        raise RuntimeError("the API server is away")

    monkeypatch.setitem(webhook.CHECKS, "SecretBinding", broken)
    with caplog.at_level(logging.WARNING, "appinfra.webhook"):
        assert _call(_handler(object())) == []
    assert "failed; allowed" in caplog.text
    assert _call(_handler(None)) == []  # the operator not started yet


def test_the_handler_judges_only_spec_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(webhook.CHECKS, "SecretBinding", lambda rt, body: Verdict("no"))
    fn = _handler(object())
    # The operator adding its finalizer, or anyone's metadata-only update: allowed.
    assert _call(fn, old=kopf.Body(BODY)) == []
    gone = "2026-01-01T00:00:00Z"
    leaving = {**BODY, "metadata": {**BODY["metadata"], "deletionTimestamp": gone}}
    leaving["spec"] = {"x": 2}
    assert _call(fn, old=kopf.Body(BODY), body=leaving) == []
    with pytest.raises(kopf.AdmissionError):
        _call(fn, old=kopf.Body(BODY), body={**BODY, "spec": {"x": 2}})


def test_run_with_a_webhook_port_and_no_certificate_says_what_to_mount(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The process's logging set-up would take the "appinfra" logger away from caplog.
    monkeypatch.setattr("appinfra.runner.configure_logging", lambda *_: None)
    (tmp_path / "tls.crt").write_text("")
    with caplog.at_level(logging.ERROR, "appinfra"):
        code = run_operator(namespaces=[], all_namespaces=True, config_path="none.yaml",
                            log_format="text", verbose=False, metrics_port=0,
                            webhook_port=9443, webhook_cert_dir=str(tmp_path))  # fmt: skip
    assert code == 2
    assert f"needs tls.key in --webhook-cert-dir {tmp_path}" in caplog.text


def test_the_compile_check_parses_user_templates_only_in_a_sandbox_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The tenant rule: a user's template is parsed only where its CPU, memory and time are
    # bounded. Parsing in the operator's own process (here, the test's) is made to fail.
    from appinfra.render import templates

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("a user template was parsed in the operator's process")

    for method in ("from_string", "parse", "compile"):
        monkeypatch.setattr(templates._ENV, method, refuse)
    assert compile_problem("spec.target.template.data.url", "{{ password") is not None
    assert compile_problem("spec.target.template.data.url", "{{ password }}") is None
