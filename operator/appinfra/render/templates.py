"""Jinja2 for user templates, sandboxed: no filesystem, no environment, no attributes
that reach Python internals, and an undefined name is an error rather than "".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

# One environment: compiling it is not free and it holds no per-call state.
_ENV = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    loader=None,
)


class TemplateError(ValueError):
    """A template failed to compile or render; the message names the template, never values."""


def render_template(name: str, source: str, context: Mapping[str, Any]) -> str:
    try:
        return _ENV.from_string(source).render(**context)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{name}: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{name}: syntax error on line {exc.lineno}: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"{name}: not allowed in a sandboxed template: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(f"{name}: {type(exc).__name__} while rendering") from None
