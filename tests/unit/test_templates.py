import subprocess
import sys
import time
from pathlib import Path

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


def test_normal_templates_render_as_before() -> None:
    source = (
        "{% macro kv(k, v) %}{{ k }}={{ v }}{% endmacro %}"
        "{% for k in KEYS.split(',') %}{{ kv(k, k|upper) ~ ';' }}{% endfor %}\n"
        "{{ '%5.2f'|format(3.14159) }} {{ '{:>4}'.format('ab') }} {{ 'x'|center(5) }}|\n"
        "{{ 'a\\nb'|indent(2, first=True) }} {{ ['p', 'q']|join('-') }} {{ 2 ** 10 }}\n"
        "{{ {'b': 1, 'a': 2}|dictsort|tojson }} {{ 'long words here'|wordwrap(5) }}"
    )
    expected = (
        'a=A;b=B;\n 3.14   ab   x  |\n  a\n  b p-q 1024\n[["a", 2], ["b", 1]] long\nwords\nhere'
    )
    assert render_template("t", source, {"KEYS": "a,b"}) == expected
    assert render_template("t", "{{ 'a' * 1048576 }}", {}) == "a" * 1048576  # exactly the cap


@pytest.mark.parametrize("char", ["a", "\u20ac", "\U0001f600"])
def test_the_largest_output_fits_in_the_worker_memory_budget(char: str) -> None:
    """1 Mi characters of 1 to 4 bytes in UTF-8: a str of up to 4 MiB, copied by the
    join and the reply; sandbox.MEMORY_MIB must leave room for them all."""
    out = render_template("t", "{% for i in range(1024) %}{{ C * 1024 }}{% endfor %}", {"C": char})
    assert out == char * 1048576
    assert render_template("t", "{{ C * 1048576 }}", {"C": char}, tenant="ns") == out


def test_rendering_is_deterministic() -> None:
    """Nothing random: a ConfigMap rendered twice must be the same bytes, or every
    resync would roll the Deployment out."""
    for source in ("{{ lipsum() }}", "{{ [1, 2, 3]|random }}"):
        with pytest.raises(TemplateError):
            render_template("t", source, {})
    source = "{% for k, v in D|dictsort %}{{ k }}={{ v }}\n{% endfor %}"
    context = {"D": {str(i): str(i * i) for i in range(50)}}
    assert len({render_template("t", source, context) for _ in range(5)}) == 1


def test_errors_name_template_line_and_type() -> None:
    with pytest.raises(TemplateError) as err:
        render_template("config.files.app.yaml", "a\nb\n{% for %}", {})
    assert str(err.value).startswith("config.files.app.yaml, line 3: syntax error")
    with pytest.raises(TemplateError) as err:
        render_template("t", "a\n\n\n{{ X + 1 }}", {"X": "v"})
    assert str(err.value) == "t, line 4: TypeError while rendering"


def test_compiled_templates_are_cached_within_bounds() -> None:
    from appinfra.render import templates

    for i in range(templates.MAX_CACHED_TEMPLATES * 2):
        assert templates.render_here("t", f"{{{{ {i} }}}}", {}) == str(i)
    assert len(templates._CACHE._items) == templates.MAX_CACHED_TEMPLATES
    templates.render_here("big", "x" * (templates.MAX_CACHED_SOURCE // 4 + 1), {})
    assert "x" * (templates.MAX_CACHED_SOURCE // 4 + 1) not in templates._CACHE._items
    assert templates._CACHE._chars <= templates.MAX_CACHED_SOURCE


def test_workers_end_with_the_process_that_started_them() -> None:
    """At exit (and on shutdown()) the template workers stop; none is left behind."""
    code = (
        "import os, pathlib\n"
        "from appinfra.render.templates import render_template\n"
        "assert render_template('t', '{{ 1 }}', {}) == '1'\n"
        "me = str(os.getpid())\n"
        "for p in pathlib.Path('/proc').iterdir():\n"
        "    if p.name.isdigit():\n"
        "        try: stat = (p / 'stat').read_text()\n"
        "        except OSError: continue\n"
        "        if stat.rsplit(')', 1)[1].split()[1] == me: print(p.name)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    workers = [int(pid) for pid in done.stdout.split()]
    assert workers, "the render ran in no child process"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
        time.sleep(0.05)
    assert not any(Path(f"/proc/{p}").exists() for p in workers)


def test_shutdown_stops_workers_and_a_later_render_starts_new_ones() -> None:
    from appinfra.render import sandbox

    render_template("t", "{{ 1 }}", {})
    sandbox.shutdown()
    assert render_template("t", "{{ 2 }}", {}) == "2"


def test_a_sandbox_that_cannot_start_is_an_error_not_a_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Never render unbounded in the operator's own process instead."""
    from appinfra.render import sandbox

    monkeypatch.setattr(sandbox, "_ENTRY", "import sys; sys.exit(3)")
    pool = sandbox.WorkerPool(size=1)
    with pytest.raises(sandbox.SandboxError, match=r"^t: the template sandbox could not start"):
        pool.render("t", "{{ 1 }}", {})
    monkeypatch.undo()
    assert pool.render("t", "{{ 1 }}", {}) == "1"
    pool.close()
