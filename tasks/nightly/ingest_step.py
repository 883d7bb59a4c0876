"""The nightly ingest step: where new logs come from, and which failures are worth a retry.

A site drops new usage logs into the incoming folder, ``<LLMOPT_HOME>/data/incoming`` (any
supported format: JSONL / NDJSON / JSON / CSV / Parquet, optionally ``.gz``; sub-folders too).
The deployed flow reads that folder every night. Relative inputs resolve against the home, so a
worker started anywhere reads the same folder. A glob or folder that matches nothing means
"nothing new tonight", not a failure; a file named explicitly that does not exist is an error.
Files already ingested are recognised by their digest and skipped (ingest is idempotent).

Retries: only transient errors (an I/O error, the warehouse locked by another process) are
retried; a deterministic failure (an unreadable file, an unsupported type) fails at once with
its message, through Prefect's ``retry_condition_fn``.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from tasks.core.errors import LlmoptError
from tasks.core.settings import Settings
from tasks.ingest.pipeline import IngestError, ingest_paths

INCOMING = "data/incoming"
"""The default input of the deployed nightly flow, relative to ``LLMOPT_HOME``."""


class IngestFailed(LlmoptError, RuntimeError):
    """Some files could not be ingested (named in the message); retrying will not help."""


def incoming_dir(settings: Settings) -> Path:
    """The documented incoming folder of a home: ``<LLMOPT_HOME>/data/incoming``.

    Args:
        settings: the resolved settings.

    Returns:
        The folder (not created).
    """
    return settings.home / INCOMING


def resolve_inputs(settings: Settings, patterns: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split the night's input patterns into what exists and what matched nothing.

    Args:
        settings: the resolved settings; relative patterns resolve against ``settings.home``.
        patterns: files, folders or globs (``**`` allowed).

    Returns:
        ``(found, empty)``: absolute paths to hand to the ingest pipeline, and the patterns
        (globs or folders) that matched nothing tonight.

    Raises:
        IngestError: a plain file name (no glob characters) that does not exist.
    """
    found: list[str] = []
    empty: list[str] = []
    for pattern in patterns:
        text = str(pattern)
        path = Path(text).expanduser()
        absolute = path if path.is_absolute() else settings.home / path
        if glob.has_magic(text):
            if glob.glob(str(absolute), recursive=True):
                found.append(str(absolute))
            else:
                empty.append(text)
        elif absolute.is_dir():
            has_files = any(p.is_file() for p in absolute.rglob("*"))
            (found if has_files else empty).append(str(absolute) if has_files else text)
        elif absolute.exists():
            found.append(str(absolute))
        elif text.rstrip("/").endswith(INCOMING):
            empty.append(text)  # the documented folder, not created yet: nothing new
        else:
            raise IngestError(f"no such file or directory: {absolute} (from input {text!r})")
    return found, empty


def ingest_new_logs(settings: Settings, patterns: Sequence[str]) -> dict[str, Any]:
    """Ingest tonight's new logs; nothing matching is a quiet night, not a failure.

    Args:
        settings: the resolved settings.
        patterns: the flow's ``input_paths`` (files, folders, globs).

    Returns:
        The ingest report as a dict (per-file accounting, validation, totals) plus
        ``nothing_new`` (bool) and ``empty_inputs`` (the patterns that matched nothing).

    Raises:
        IngestError: an explicitly named file does not exist or has an unsupported type.
        IngestFailed: some files could not be read (each named with its error).
    """
    found, empty = resolve_inputs(settings, patterns)
    if not found:
        return {"nothing_new": True, "empty_inputs": empty, "files": [], "ingested": 0}
    report = ingest_paths(found, settings=settings)
    summary = report.to_dict()
    if report.failed:
        names = ", ".join(f"{f.path}: {f.error}" for f in report.failed)
        raise IngestFailed(f"{len(report.failed)} file(s) failed to ingest: {names}")
    summary["nothing_new"] = False
    summary["empty_inputs"] = empty
    return summary


def is_transient(exc: BaseException) -> bool:
    """Whether an ingest failure is worth a retry (I/O trouble, a held lock), or final.

    Args:
        exc: the exception the ingest step raised.

    Returns:
        True for transient errors: ``OSError`` other than a missing file or a permission
        error, DuckDB I/O errors (the warehouse locked by another process), timeouts.
        False for every :class:`~tasks.core.errors.LlmoptError` (bad input, unreadable file).
    """
    if isinstance(exc, LlmoptError):
        return False
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return False
    return isinstance(exc, OSError | TimeoutError | duckdb.IOException)


__all__ = [
    "INCOMING",
    "IngestFailed",
    "incoming_dir",
    "ingest_new_logs",
    "is_transient",
    "resolve_inputs",
]
