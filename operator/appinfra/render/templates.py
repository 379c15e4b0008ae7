"""Jinja2 for user templates, sandboxed: no filesystem, no environment, no attributes
that reach Python internals, and an undefined name is an error rather than "".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

MAX_OUTPUT = 1024 * 1024  # characters; a ConfigMap or Secret holds at most 1 MiB anyway
MAX_OPERAND = MAX_OUTPUT  # the longest string or list `*` may build, the largest `**` result


class _BoundedSandbox(SandboxedEnvironment):
    """The sandbox plus limits on `*` and `**`: `{{ 'a' * 2**40 }}` must fail cleanly,
    not allocate until the operator is OOM-killed (ranges are already capped by Jinja)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        numbers = isinstance(left, int | float) and isinstance(right, int | float)
        if operator == "**" and numbers and abs(left) > 1 and right * math.log2(abs(left)) > 64:
            raise SecurityError("the result of ** is too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                repeated = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if repeated and len(seq) * times > MAX_OPERAND:
                    raise SecurityError(f"'*' would build more than {MAX_OPERAND} items")
        return super().call_binop(context, operator, left, right)


# One environment: compiling it is not free and it holds no per-call state.
_ENV = _BoundedSandbox(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    loader=None,
)


class TemplateError(ValueError):
    """A template failed to compile or render; the message names the template, never values."""


@functools.lru_cache(maxsize=1024)
def _compile(source: str) -> jinja2.Template:
    """Compiling is the expensive part and every resync would repeat it."""
    return _ENV.from_string(source)


def render_template(name: str, source: str, context: Mapping[str, Any]) -> str:
    try:
        out = _compile(source).render(**context)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{name}: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{name}: syntax error on line {exc.lineno}: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(f"{name}: not allowed in a sandboxed template: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(f"{name}: {type(exc).__name__} while rendering") from None
    except (MemoryError, RecursionError):
        raise TemplateError(
            f"{name}: the template needs too much memory or nests too deeply"
        ) from None
    if len(out) > MAX_OUTPUT:
        raise TemplateError(f"{name}: renders to more than {MAX_OUTPUT} characters")
    return out
