"""Safe YAML for pipelines: line numbers for every path and `${VAR}` interpolation."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from ragline.errors import ConfigError

__all__ = ["Located", "format_path", "interpolate_env", "load_yaml"]

Loc = tuple[str | int, ...]
_ENV = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def format_path(loc: Loc) -> str:
    """`("stages", 1, "top_k")` -> `stages[1].top_k`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


class Located:
    """YAML data plus the line of every path in it, for error messages that point into the file."""

    def __init__(self, data: Any, lines: Mapping[Loc, int], source: str) -> None:
        self.data = data
        self.lines = dict(lines)
        self.source = source

    def line_of(self, loc: Loc) -> int | None:
        """The 1-based line of `loc`, or of its closest enclosing path present in the file."""
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return None

    def error(self, loc: Loc, message: str) -> ConfigError:
        """A ConfigError reading `file:line: path: message`."""
        return ConfigError(self.where(loc) + message)

    def where(self, loc: Loc) -> str:
        """`file:line: path: ` for `loc`."""
        line = self.line_of(loc)
        at = f"{self.source}:{line}" if line is not None else self.source
        return f"{at}: {format_path(loc)}: "


# Aliases let a few hundred bytes expand exponentially; a pipeline never needs this many values.
MAX_VALUES = 10_000


def _record_lines(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], budget: list[int], source: str
) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(
            f"{source}: the YAML expands to more than {MAX_VALUES} values (through aliases?)"
        )
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    path = format_path((*loc, key.value))
                    raise ConfigError(f"{source}:{key.start_mark.line + 1}: {path}: duplicate key")
                seen.add(key.value)
                lines[(*loc, key.value)] = key.start_mark.line + 1
                _record_lines(value, (*loc, key.value), lines, budget, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, (*loc, i), lines, budget, source)


def load_yaml(text: str, source: str) -> Located:
    """Parse YAML safely (no tags that build objects) and keep the line of every path.

    Duplicate keys, documents that expand past `MAX_VALUES` values and absurd nesting are
    configuration errors rather than silent overwrites, hangs or crashes.
    """
    loader = yaml.SafeLoader(text)
    lines: dict[Loc, int] = {}
    try:
        node = loader.get_single_node()
        if node is not None:
            _record_lines(node, (), lines, [MAX_VALUES], source)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = err.problem or err.context or "invalid YAML"
        raise ConfigError(f"{source}{line}: malformed YAML: {problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: malformed YAML: {err}") from None
    except RecursionError:
        raise ConfigError(f"{source}: the YAML is nested too deeply") from None
    finally:
        loader.dispose()
    return Located(data, lines, source)


def interpolate_env(doc: Located, env: Mapping[str, str] | None = None) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in string values; `$${VAR}` stays literal."""
    env = os.environ if env is None else env

    def sub(value: Any, loc: Loc) -> Any:
        if isinstance(value, str):

            def one(m: re.Match[str]) -> str:
                if m.group(1):
                    return m.group(0)[1:]
                name, default = m.group(2), m.group(3)
                if name in env:
                    return env[name]
                if default is not None:
                    return default
                raise doc.error(
                    loc,
                    f"environment variable {name!r} is not set (write ${{{name}:-default}} for a default)",
                )

            return _ENV.sub(one, value)
        if isinstance(value, dict):
            return {k: sub(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v, (*loc, i)) for i, v in enumerate(value)]
        return value

    return sub(doc.data, ())
