"""Jinja2 for user templates, sandboxed and bounded.

Three layers keep a tenant's template from harming the shared operator:
- Jinja2's SandboxedEnvironment: no filesystem, no environment, no attributes that reach
  Python internals, and an undefined name is an error rather than "".
- Cheap guards in this module: the operators, filters and string methods that build a
  value from a size argument (`*`, `~`, `%`, center, indent, wordwrap, ...) refuse
  results longer than the output could ever be, so most attacks fail in microseconds.
- The process sandbox (appinfra.render.sandbox): every render runs in a long-lived
  worker process with an address-space limit and a CPU timer, and is killed after a
  wall-clock timeout. That is what bounds everything the guards do not foresee.

Error messages carry the template's name, the line, the error type and names that
appear in the template's source; never a value from the context (a secret, for a
SecretBinding) nor anything computed from one.
"""

from __future__ import annotations

import functools
import math
import re
import string
import types
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any

import jinja2
from jinja2 import filters as jfilters
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

from appinfra.render import sandbox

MAX_OUTPUT = 1024 * 1024  # characters; a ConfigMap or Secret holds at most 1 MiB anyway
# The longest string or list any one operation may build, the largest `**` result:
# nothing longer can end up in the output, so nothing longer is needed on the way.
MAX_OPERAND = MAX_OUTPUT
MAX_INT_BITS = 4096  # `*` on integers: enough for any real arithmetic, far from slow
MAX_JSON_INDENT = 64  # tojson(indent=N) repeats N per nesting level on every line
MAX_CACHED_TEMPLATES = 64  # compiled templates kept per worker process
MAX_CACHED_SOURCE = 256 * 1024  # characters of source kept compiled, per worker process
MAX_MESSAGE = 200  # characters of a syntax error's own text quoted in a message


class TemplateError(ValueError):
    """A template failed to compile or render; the message names the template, never values."""

    budget = False  # it ran out of CPU time or memory (the sandbox remembers those)


class LimitExceeded(SecurityError):
    """One of this module's guards refused an operation; the message is fixed text."""


class CpuBudgetExceeded(BaseException):
    """Raised by the sandbox worker's CPU timer. A BaseException so that no `except
    Exception` on the way (Jinja has a few) can swallow it."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds


class _OutputTooLarge(Exception):
    pass


class _Lookup(Exception):
    """What an undefined value was about, as data: the message is built from it only
    when the name appears in the template's source."""

    name: Any = None
    variable = False  # a plain name lookup, not an attribute or item of something
    of_type = ""


class _UndefinedLookup(_Lookup, jinja2.UndefinedError):
    pass


class _UnsafeLookup(_Lookup, SecurityError):
    pass


def _lookup_error(base: type[Exception], name: Any, obj: Any, message: str) -> Exception:
    """Jinja's own message is dropped on purpose: it quotes the looked-up key."""
    exc: _Lookup = _UnsafeLookup() if issubclass(base, SecurityError) else _UndefinedLookup()
    exc.name, exc.variable, exc.of_type = name, obj is missing, type(obj).__name__
    return exc


class _Undefined(jinja2.StrictUndefined):
    """StrictUndefined whose error carries the name and the object's type as data, so
    the message can leave out a name that came from a value (`{{ {}[SECRET] }}`)."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: type[jinja2.TemplateRuntimeError] = jinja2.UndefinedError,
    ) -> None:
        super().__init__(hint, obj, name, exc)
        self._undefined_exception = functools.partial(_lookup_error, exc, name, obj)  # type: ignore[assignment]


# --- guards ------------------------------------------------------------------------------


def _refuse(what: str) -> LimitExceeded:
    return LimitExceeded(f"{what} would build more than {MAX_OPERAND} characters or items")


def _bounded(value: Any, what: str) -> Any:
    """Refuse a built value longer than any output (after the fact: a second line of
    defence that stops doubling one step later, for what has no guard ahead of it)."""
    if isinstance(value, str | bytes | list | tuple | dict) and len(value) > MAX_OPERAND:
        raise _refuse(what)
    return value


def _width(value: Any, what: str) -> None:
    if isinstance(value, int) and value > MAX_OPERAND:
        raise _refuse(what)


_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?[diouxXeEfFgGcrsa%]")
_SPEC = re.compile(r"^(?:.?[<>=^])?[+\- ]?z?#?0?(\d*)[,_]?(?:\.(\d*))?[a-zA-Z%]?$")


def _check_percent_format(fmt: str, what: str) -> None:
    """`'%999999999d' % 1` allocates the width: refuse widths and precisions that add
    up to more than the output could hold, and `*` (a width taken from the arguments)."""
    total = 0
    for width, precision in _PERCENT.findall(fmt):
        if "*" in (width, precision):
            raise LimitExceeded(f"{what}: a '*' width or precision is not allowed")
        total += int(width or 0) + int(precision or 0)
    if total > MAX_OPERAND:
        raise _refuse(what)


def _check_brace_format(fmt: str, what: str) -> None:
    """The same for str.format: `'{:>999999999}'.format(1)`."""
    total = 0
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises the same error itself
    for _, _, spec, _ in fields:
        if not spec:
            continue
        if "{" in spec:
            raise LimitExceeded(f"{what}: a nested format spec is not allowed")
        found = _SPEC.match(spec)
        if found:
            total += int(found.group(1) or 0) + int(found.group(2) or 0)
    if total > MAX_OPERAND:
        raise _refuse(what)


def _replaced_length(s: str, old: str, new: str, count: Any) -> int:
    hits = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(s) + hits * (len(new) - len(old))


def _check_join(sep: str, items: list[Any], what: str) -> None:
    total = len(sep) * max(len(items) - 1, 0)
    for item in items:
        total += len(item) if isinstance(item, str) else 32
        if total > MAX_OPERAND:
            raise _refuse(what)


def _bounded_join(parts: Iterable[Any]) -> str:
    """`~`, and the output of every macro, block and `{% set %}` block."""
    strs = [p if isinstance(p, str) else str(p) for p in parts]
    if sum(map(len, strs)) > MAX_OPERAND:
        raise _refuse("'~' or a block")
    return "".join(strs)


_SIZED_METHODS = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "replace", "join", "extend"}
)


def _guard_method(method: Any) -> Callable[..., Any]:
    """A bound str/bytes/list method whose result grows with an argument, checked first."""
    name, obj = method.__name__, method.__self__
    what = f"'{name}'"

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if name in ("center", "ljust", "rjust", "zfill"):
            _width(args[0] if args else kwargs.get("width"), what)
        elif name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            tabs = obj.count("\t") if isinstance(obj, str) else obj.count(b"\t")
            if isinstance(size, int) and len(obj) + size * tabs > MAX_OPERAND:
                raise _refuse(what)
        elif name == "replace" and isinstance(obj, str) and len(args) >= 2:
            old, new = args[0], args[1]
            count = args[2] if len(args) > 2 else -1
            sized = isinstance(old, str) and isinstance(new, str)
            if sized and _replaced_length(obj, old, new, count) > MAX_OPERAND:
                raise _refuse(what)
        elif name == "join" and args:
            items = list(args[0])
            if isinstance(obj, str):
                _check_join(obj, items, what)
            args = (items, *args[1:])
        elif name == "extend" and args:
            items = list(args[0])
            if len(obj) + len(items) > MAX_OPERAND:
                raise _refuse(what)
            args = (items, *args[1:])
        return _bounded(method(*args, **kwargs), what)

    return guarded


# Filters with a size argument, checked before they allocate. The signatures (and the
# pass_* decorators Jinja reads) are the originals'.


def _center(value: Any, width: int = 80) -> str:
    _width(width, "'center'")
    return jfilters.do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    lines = str(s).count("\n") + 1
    pad = width if isinstance(width, int) else len(str(width))
    if lines * max(pad, 0) + len(str(s)) > MAX_OPERAND:
        raise _refuse("'indent'")
    return jfilters.do_indent(s, width, first, blank)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_percent_format(str(value), "'format'")
    return jfilters.do_format(value, *args, **kwargs)


@jinja2.pass_environment
def _wordwrap(
    environment: jinja2.Environment,
    s: str,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    glue = len(wrapstring) if isinstance(wrapstring, str) else 1
    if isinstance(width, int) and width > 0 and (len(s) // width + 1) * glue > MAX_OPERAND:
        raise _refuse("'wordwrap'")
    return jfilters.do_wordwrap(environment, s, width, break_long_words, wrapstring,
                                break_on_hyphens)  # fmt: skip


@jinja2.pass_eval_context
def _replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    sized = isinstance(s, str) and isinstance(old, str) and isinstance(new, str)
    if sized and _replaced_length(s, old, new, count) > MAX_OPERAND:
        raise _refuse("'replace'")
    return jfilters.do_replace(eval_ctx, s, old, new, count)


@jinja2.pass_eval_context
def _join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = list(value)
    if attribute is None:
        _check_join(str(d), items, "'join'")
    return jfilters.sync_do_join(eval_ctx, items, d, attribute)


def _batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    _width(linecount, "'batch'")
    return jfilters.do_batch(value, linecount, fill_with)


def _slice(value: Collection[Any], slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
    _width(slices, "'slice'")
    return jfilters.sync_do_slice(value, slices, fill_with)


@jinja2.pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: int | None = None) -> Any:
    if isinstance(indent, int) and indent > MAX_JSON_INDENT:
        raise LimitExceeded(f"'tojson' indent is larger than {MAX_JSON_INDENT}")
    return jfilters.do_tojson(eval_ctx, value, indent)


_GUARDED_FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center,
    "indent": _indent,
    "format": _format,
    "wordwrap": _wordwrap,
    "replace": _replace,
    "join": _join,
    "batch": _batch,
    "slice": _slice,
    "tojson": _tojson,
}


def _post_checked(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)  # keeps jinja_pass_arg
    def checked(*args: Any, **kwargs: Any) -> Any:
        return _bounded(f(*args, **kwargs), f"'{name}'")

    return checked


class _BoundedCodeGenerator(CodeGenerator):
    """`~` joins through the environment, so its length is checked before it is built
    (the stock code calls str_join directly)."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _BoundedSandbox(SandboxedEnvironment):
    """The sandbox plus the guards above, and nothing random: `lipsum` and `random`
    are gone, so that rendering twice gives the same bytes (a ConfigMap rewritten on
    every resync would roll the Deployment out every time)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BoundedCodeGenerator
    concat = staticmethod(_bounded_join)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        del self.globals["lipsum"]
        del self.filters["random"]
        for name, f in list(self.filters.items()):
            self.filters[name] = _GUARDED_FILTERS.get(name) or _post_checked(name, f)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        numbers = isinstance(left, int | float) and isinstance(right, int | float)
        if operator == "**" and numbers and abs(left) > 1 and right * math.log2(abs(left)) > 64:
            raise LimitExceeded("the result of '**' is too large")
        if operator == "*":
            integers = isinstance(left, int) and isinstance(right, int)
            if integers and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise LimitExceeded(f"'*' would build an integer over {MAX_INT_BITS} bits")
            for seq, times in ((left, right), (right, left)):
                repeated = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if repeated and len(seq) * times > MAX_OPERAND:
                    raise _refuse("'*'")
        if operator == "+":
            sized = isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
            if sized and len(left) + len(right) > MAX_OPERAND:
                raise _refuse("'+'")
        if operator == "%" and isinstance(left, str):
            _check_percent_format(left, "'%'")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Every attribute and item read passes here: str.format gets its width check,
        the string and list methods that grow with an argument get theirs."""
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_brace_format(value.__self__, f"'{value.__name__}'")
            return wrapped
        if (
            isinstance(value, types.BuiltinMethodType)
            and value.__name__ in _SIZED_METHODS
            and isinstance(getattr(value, "__self__", None), str | bytes | bytearray | list)
        ):
            return _guard_method(value)
        return None


_ENV = _BoundedSandbox(
    undefined=_Undefined,
    autoescape=False,
    keep_trailing_newline=True,
    loader=None,
)


# --- rendering in this process -----------------------------------------------------------


class _Cache:
    """Compiled templates by source, least recently used first; bounded in entries and
    in source characters (a compiled template is many times its source)."""

    def __init__(self) -> None:
        self._items: dict[str, jinja2.Template] = {}
        self._chars = 0

    def get(self, source: str) -> jinja2.Template:
        template = self._items.pop(source, None)
        if template is None:
            template = _ENV.from_string(source)
            if len(source) > MAX_CACHED_SOURCE // 4:
                return template
            self._chars += len(source)
        self._items[source] = template  # (re)inserted last: most recently used
        while self._items and (
            len(self._items) > MAX_CACHED_TEMPLATES or self._chars > MAX_CACHED_SOURCE
        ):
            oldest = next(iter(self._items))
            del self._items[oldest]
            self._chars -= len(oldest)
        if not self._items:
            self._chars = 0  # a CPU timer may have struck between pop and insert
        return template

    def clear(self) -> None:
        self._items.clear()
        self._chars = 0


_CACHE = _Cache()


def render_here(
    name: str,
    source: str,
    context: Mapping[str, Any],
    *,
    cpu_seconds: float | None = None,
    memory_mib: int | None = None,
    compile_only: bool = False,
) -> str:
    """Compile (cached) and render in this process, streaming the output and stopping
    at MAX_OUTPUT (`compile_only`: stop after compiling, return ""). Bounded only by
    the guards: the sandbox worker calls this with its CPU timer armed and its address
    space limited (cpu_seconds and memory_mib are only quoted in messages). Every
    failure is a TemplateError with a value-free message."""
    try:
        template = _CACHE.get(source)
        if compile_only:
            return ""
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise _OutputTooLarge
            chunks.append(chunk)
        return "".join(chunks)
    except BaseException as exc:  # every kind ends as a TemplateError
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        line = _template_line(exc)
        message = f"{name}, line {line}" if line else name
        message += ": " + _describe(exc, source, cpu_seconds, memory_mib)
        budget = isinstance(exc, CpuBudgetExceeded | MemoryError)
    # Raised here, outside the except block, so that the TemplateError holds no
    # __context__: the original's traceback holds the frames and whatever they built.
    error = TemplateError(message)
    error.budget = budget
    raise error


def _template_line(exc: BaseException) -> int | None:
    """The template line of the innermost template frame in the traceback."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        elif frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno  # a frame Jinja rewrote to the template's line
        tb = tb.tb_next
    return line


def _describe(
    exc: BaseException, source: str, cpu_seconds: float | None, memory_mib: int | None
) -> str:
    """The message for one failure: fixed text, the error type, and at most a name the
    template's own source spells out. Exception messages are never copied, except a
    syntax error's, which is about the source alone."""
    if isinstance(exc, CpuBudgetExceeded):
        return f"exceeded the CPU time budget of {exc.seconds:g} s"
    if isinstance(exc, MemoryError):
        budget = f" of {memory_mib} MiB" if memory_mib else ""
        return f"exceeded the memory budget{budget}"
    if isinstance(exc, _OutputTooLarge):
        return f"renders to more than {MAX_OUTPUT} characters"
    if isinstance(exc, RecursionError):
        return "nests or recurses too deeply (RecursionError)"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"syntax error: {str(exc.message)[:MAX_MESSAGE]}"
    if isinstance(exc, SyntaxError):  # Python's limits on the generated code
        return f"nests too deeply to compile ({type(exc).__name__})"
    if isinstance(exc, LimitExceeded):
        return f"not allowed in a sandboxed template: {exc}"
    if isinstance(exc, _Lookup):
        name = exc.name if isinstance(exc.name, str) else None
        named = name if name is not None and name in _source_names(source) else None
        if isinstance(exc, SecurityError):
            what = f"attribute '{named}'" if named else "an attribute"
            return f"not allowed in a sandboxed template: {what} of a {exc.of_type} is unsafe"
        if exc.variable:
            return f"'{named}' is undefined" if named else "a name is undefined"
        what = f"attribute or key '{named}'" if named else "such attribute or key"
        return f"UndefinedError: a {exc.of_type} has no {what}"
    if isinstance(exc, SecurityError):
        return "not allowed in a sandboxed template (SecurityError)"
    return f"{type(exc).__name__} while rendering"


def _source_names(source: str) -> frozenset[str]:
    """Names and string constants written in the source: safe to quote back."""
    try:
        tree = _ENV.parse(source)
    except Exception:  # no names then
        return frozenset()
    out: set[str] = set()
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Const)):
        if isinstance(node, nodes.Name):
            out.add(node.name)
        elif isinstance(node, nodes.Getattr):
            out.add(node.attr)
        elif isinstance(node, nodes.Const) and isinstance(node.value, str):
            out.add(node.value)
    return frozenset(out)


# --- the public entry point --------------------------------------------------------------


def compile_problem(name: str, source: str, *, tenant: str = "") -> str | None:
    """The TemplateError message a render would give for a template that does not
    compile, else None. Compiled in a sandbox worker like any render (a user's template
    is parsed nowhere else: parsing is bounded by the same CPU, memory and wall-clock
    budgets); no template code runs, so errors that depend on values are the render's."""
    try:
        sandbox.compile(name, source, tenant)
    except sandbox.SandboxError as exc:
        return str(exc)
    return None


def render_template(name: str, source: str, context: Mapping[str, Any], *, tenant: str = "") -> str:
    """Render a user template within the sandbox's CPU, memory and output budgets.

    Thread-safe; runs in a reused worker process (see appinfra.render.sandbox). The
    workers are shared fairly between tenants (the owner's namespace), so that one
    tenant's slow templates delay only that tenant's renders. Raises TemplateError,
    whose message names the template, the line and the error type."""
    try:
        return sandbox.render(name, source, context, tenant)
    except sandbox.SandboxError as exc:
        raise TemplateError(str(exc)) from None
