"""Small helpers shared by the ``*_commands`` modules: JSON / human output and errors."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tasks.core.errors import LlmoptError
from tasks.core.jsonable import to_jsonable


class CommandError(LlmoptError):
    """A user-facing failure: printed as one clear line, exit code 1."""


def emit(payload: Any, *, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    """Print ``payload`` as JSON (for scripts) or through ``human`` (for people)."""
    if as_json or human is None:
        json.dump(to_jsonable(payload), sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(human(payload).rstrip("\n") + "\n")


def iso_date(text: str) -> dt.date:
    """An argparse ``type``: a ``YYYY-MM-DD`` day, or a usage error that says so."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


@contextmanager
def user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Report ``kinds`` (default :class:`ValueError`: a bad option or configuration value) as a
    :class:`CommandError`, which :func:`guarded` prints as one line.

    Only for errors that are not already an :class:`LlmoptError` (those print as one line anyway).
    """
    caught = kinds or (ValueError,)
    try:
        yield
    except caught as exc:
        raise CommandError(str(exc)) from exc


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def guarded(
    handler: Callable[[argparse.Namespace], int | None],
) -> Callable[[argparse.Namespace], int]:
    """Wrap a handler so any :class:`LlmoptError` prints one line to stderr and exits 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(handler(args) or 0)
        except LlmoptError as exc:
            print(f"llmopt: error: {exc}", file=sys.stderr)
            return 1

    return run


__all__ = [
    "CommandError",
    "add_json_flag",
    "emit",
    "guarded",
    "iso_date",
    "to_jsonable",
    "user_errors",
]
