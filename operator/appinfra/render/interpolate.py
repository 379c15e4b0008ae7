"""`${VAR}` / `${VAR:default}` interpolation for ServiceProfile config data.

`$${` is an escaped literal `${`. A reference with no value and no default is an
error; every missing name is collected so one status message lists them all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# $${...} (escape) or ${NAME} / ${NAME:default}; the default may be empty and runs to '}'.
_TOKEN = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_.-]*)(?::([^}]*))?\}")


class MissingVariables(ValueError):
    """Raised with the sorted names of every variable that has no value and no default."""

    def __init__(self, names: list[str]):
        self.names = names
        super().__init__("missing variables: " + ", ".join(names))


def _substitute(text: str, variables: Mapping[str, str], missing: set[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name in variables:
            return variables[name]
        if default is not None:
            return default
        missing.add(name)
        return match.group(0)

    return _TOKEN.sub(replace, text)


def interpolate(data: Mapping[str, str], variables: Mapping[str, str]) -> dict[str, str]:
    """Interpolate every value of `data`; raise MissingVariables naming all gaps at once."""
    missing: set[str] = set()
    out = {key: _substitute(value, variables, missing) for key, value in data.items()}
    if missing:
        raise MissingVariables(sorted(missing))
    return out
