import pytest

from appinfra.render.templates import TemplateError, render_template


def test_renders_with_context() -> None:
    assert render_template("t", "name: {{ APP }}", {"APP": "payments"}) == "name: payments"


def test_undefined_name_is_an_error_naming_it() -> None:
    with pytest.raises(TemplateError, match="'MISSING' is undefined"):
        render_template("app.yaml", "{{ MISSING }}", {})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    ],
)
def test_sandbox_escapes_are_refused(source: str) -> None:
    with pytest.raises(TemplateError):
        render_template("evil", source, {})


def test_no_filesystem_access() -> None:
    with pytest.raises(TemplateError):
        render_template("t", "{% include '/etc/passwd' %}", {})


def test_error_messages_do_not_echo_values() -> None:
    with pytest.raises(TemplateError) as err:
        render_template("t", "{{ SECRET + 1 }}", {"SECRET": "hunter2"})
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize(
    "source",
    ["{{ 'a' * 2**40 }}", "{{ 'ab' * 10000000 }}", "{{ [1] * 10**9 }}", "{{ 10 ** 10 ** 10 }}"],
)
def test_resource_exhaustion_is_refused(source: str) -> None:
    with pytest.raises(TemplateError):
        render_template("huge", source, {})


def test_output_size_is_bounded() -> None:
    with pytest.raises(TemplateError, match="more than"):
        render_template("big", "{% for i in range(20000) %}{{ 'x' * 100 }}{% endfor %}", {})
    assert render_template("ok", "{{ 'ab' * 3 }}", {}) == "ababab"
