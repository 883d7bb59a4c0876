"""Per-capability configuration files (TOML), found per file and checked strictly.

Each capability keeps its settings in ``<name>.toml``: budget, experiments, monitoring,
nightly, registry, search. A file is looked up per file, first match wins (no merging):

1. ``<config_dir>/<name>.toml``: ``LLMOPT_CONFIG_DIR``, by default ``LLMOPT_HOME/config``
   (the user's own settings; ``llmopt init`` writes a commented start there);
2. ``data/config/<name>.toml``: the shipped generic defaults (no use case named).

The demo's settings for the simulator's use cases live with the demo
(``tasks/simulation/demo_config``), never in either folder above. Every file is checked against
:data:`tasks.core.config_schema.SCHEMAS` before a capability sees it: an unknown key, a key
outside its section or a value of the wrong type is a :class:`ConfigError` naming the file and
the line. ``llmopt config check`` reports every problem of every file at once.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.config_schema import SCHEMAS, Key, Section, key_homes
from tasks.core.errors import LlmoptError
from tasks.core.settings import Settings, load_settings

__all__ = [
    "CONFIG_NAMES",
    "ConfigError",
    "ConfigNotFoundError",
    "ConfigProblem",
    "check_config",
    "config_path",
    "load_config",
    "validate_config",
]

CONFIG_NAMES: tuple[str, ...] = tuple(sorted(SCHEMAS))
"""Every configuration file the capabilities read (without ``.toml``)."""


class ConfigError(LlmoptError, ValueError):
    """A configuration file is missing or malformed; the message names the file and key."""


class ConfigNotFoundError(ConfigError):
    """No ``<name>.toml`` in any configuration folder (a capability may then use its defaults;
    a malformed file is a plain :class:`ConfigError` and must never be treated so)."""


@dataclass(frozen=True, kw_only=True)
class ConfigProblem:
    """One problem in one file: where (file, 1-based line or None) and what."""

    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


def config_path(name: str, settings: Settings | None = None) -> Path:
    """The file ``<name>.toml`` resolves to: the user's folder first, then the shipped defaults.

    Args:
        name: configuration name without ``.toml`` (``"registry"``, ...).
        settings: resolved settings (default: from the environment).

    Returns:
        The first existing candidate, or the user's path when none exists (for the message).
    """
    dirs = (settings or load_settings()).config_dirs()
    for folder in dirs:
        candidate = Path(folder) / f"{name}.toml"
        if candidate.is_file():
            return candidate
    return Path(dirs[0]) / f"{name}.toml"


def load_config(name: str, settings: Settings | None = None) -> dict[str, Any]:
    """Load ``<name>.toml`` (resolved per file) as a dict, checked against its schema.

    Args:
        name: configuration name without ``.toml``.
        settings: resolved settings (default: from the environment).

    Returns:
        The parsed TOML document, unchanged (the capability parses its values).

    Raises:
        ConfigError: the file is missing, is not valid TOML, or breaks its schema; the message
            starts with ``<file>:<line>:``.
    """
    settings = settings or load_settings()
    path = config_path(name, settings)
    if not path.is_file():
        searched = ", ".join(str(d) for d in settings.config_dirs())
        raise ConfigNotFoundError(
            f"configuration file not found: {name}.toml (looked in {searched})"
        )
    text, data = _read(path)
    problems = validate_config(name, data, path=path, text=text)
    if problems:
        more = f" (and {len(problems) - 1} more; run `llmopt config check`)"
        raise ConfigError(str(problems[0]) + (more if len(problems) > 1 else ""))
    return data


def check_config(name: str, settings: Settings | None = None) -> tuple[Path, list[ConfigProblem]]:
    """Every problem of ``<name>.toml`` (resolved per file), without raising.

    Args:
        name: configuration name without ``.toml``.
        settings: resolved settings (default: from the environment).

    Returns:
        ``(path, problems)``; an empty list when the file is usable.
    """
    path = config_path(name, settings)
    if not path.is_file():
        return path, [ConfigProblem(path=path, line=None, message="file not found")]
    try:
        text, data = _read(path)
    except ConfigError as exc:
        return path, [ConfigProblem(path=path, line=_decode_line(str(exc)), message=str(exc))]
    return path, validate_config(name, data, path=path, text=text)


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _decode_line(message: str) -> int | None:
    match = re.search(r"at line (\d+)", message)
    return int(match.group(1)) if match else None


def validate_config(
    name: str, data: Mapping[str, Any], *, path: Path, text: str = ""
) -> list[ConfigProblem]:
    """Check a parsed file against ``SCHEMAS[name]``.

    Args:
        name: configuration name (a key of :data:`SCHEMAS`; unknown names are not checked).
        data: the parsed TOML document.
        path: the file, for messages.
        text: the file's text, to find line numbers (empty: no line numbers).

    Returns:
        Problems in file order; empty when the document fits its schema.
    """
    schema = SCHEMAS.get(name)
    if schema is None:
        return []
    lines = _key_lines(text)
    found: list[tuple[tuple[Any, ...], str]] = []
    _check_section(schema, data, (), found, schema)
    problems = [
        ConfigProblem(path=path, line=_line_of(lines, where), message=message)
        for where, message in found
    ]
    return sorted(problems, key=lambda p: p.line or 0)


def _header(where: tuple[Any, ...]) -> str:
    if where and isinstance(where[-1], int):
        return f"{_header(where[:-1])} entry {where[-1] + 1}"
    parts = [str(p) if re.fullmatch(r"[A-Za-z0-9_-]+", str(p)) else f'"{p}"' for p in where]
    return "[" + ".".join(parts) + "]" if parts else "the top level"


def _check_section(
    section: Section,
    data: Mapping[str, Any],
    where: tuple[Any, ...],
    found: list[tuple[tuple[Any, ...], str]],
    root: Section,
) -> None:
    named: dict[str, Section | None] = dict(section.sections)
    if section.each_use_case is not None:
        named["use_cases"] = None
    if section.each_experiment is not None:
        named["experiments"] = None
    for key, value in data.items():
        here = (*where, key)
        if key in section.keys:
            _check_value(section.keys[key], value, here, found)
        elif key in named:
            if not isinstance(value, dict):
                found.append((here, f"{key!r} must be a table ([{key}] header)"))
                continue
            child = named[key]
            if child is not None:
                _check_section(child, value, here, found, root)
                continue
            each = section.each_use_case if key == "use_cases" else section.each_experiment
            assert each is not None
            for entry, table in value.items():
                if not isinstance(table, dict):
                    found.append(((*here, entry), f"{entry!r} must be a table of settings"))
                else:
                    _check_section(each, table, (*here, entry), found, root)
        else:
            homes = [h for h in key_homes(root, key) if h != _header(where)]
            hint = f"; it belongs under {' or '.join(homes)}" if homes else ""
            if not homes:
                allowed = sorted([*section.keys, *named])
                hint = f"; allowed here: {', '.join(allowed) or 'nothing'}"
            found.append((here, f"unknown key {key!r} in {_header(where)}{hint}"))


_TYPES: dict[str, str] = {
    "int": "an integer",
    "number": "a number",
    "str": "a string",
    "bool": "true or false",
    "str_list": "a list of strings",
    "number_list": "a list of numbers",
    "int_list": "a list of integers",
    "number_table": "a table of numbers",
    "table_list": "a list of tables",
}


def _is(kind: str, value: Any) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind.endswith("_list"):
        item = kind.removesuffix("_list")
        if not isinstance(value, list):
            return False
        return all(isinstance(v, dict) if item == "table" else _is(item, v) for v in value)
    if kind == "number_table":
        return isinstance(value, dict) and all(_is("number", v) for v in value.values())
    return False


def _check_value(
    key: Key, value: Any, where: tuple[Any, ...], found: list[tuple[tuple[Any, ...], str]]
) -> None:
    name = where[-1]
    if not _is(key.kind, value):
        found.append((where, f"{name!r} in {_header(where[:-1])} must be {_TYPES[key.kind]}"))
        return
    if key.choices and value not in key.choices:
        options = ", ".join(repr(c) for c in key.choices)
        found.append((where, f"{name!r} is {value!r}; expected one of {options}"))
    if key.item is not None:
        for index, table in enumerate(value):
            _check_section(key.item, table, (*where, index), found, key.item)


# ---------------------------------------------------------------- line numbers
_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*(#.*)?$")
_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", dotted)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def _key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """First line of every table header and key, by its path (array tables get an index)."""
    lines: dict[tuple[Any, ...], int] = {}
    table: tuple[Any, ...] = ()
    counts: dict[tuple[Any, ...], int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(raw)
        if header and not _KEY.match(raw):
            path = _split_key(header.group(2))
            if header.group(1) == "[[":
                index = counts.get(path, -1) + 1
                counts[path] = index
                table = (*path, index)
            else:
                table = path
            lines.setdefault(table, number)
            continue
        key = _KEY.match(raw)
        if key:
            lines.setdefault((*table, *_split_key(key.group(1))), number)
    return lines


def _line_of(lines: Mapping[tuple[Any, ...], int], where: tuple[Any, ...]) -> int | None:
    for end in range(len(where), 0, -1):
        if where[:end] in lines:
            return lines[where[:end]]
    return None
