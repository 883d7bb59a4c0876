"""The DuckDB warehouse: one connection helper that applies the schema idempotently.

All heavy data work happens in SQL on this connection; Python only sees small aggregates.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import Any

import duckdb

from tasks.core.errors import LlmoptError
from tasks.core.settings import REPO_ROOT, Settings, load_settings
from tasks.warehouse.lake import attach as attach_lake

SCHEMA_FILES: tuple[Path, ...] = tuple(
    REPO_ROOT / "data" / name
    for name in (
        "schema.sql",
        "ingest_schema.sql",
        "experiments_schema.sql",
        "monitoring_schema.sql",
    )
)


class WarehouseMissingError(LlmoptError):
    """The warehouse file does not exist yet: nothing has been ingested into this home."""


class WarehouseBusyError(LlmoptError):
    """Another process holds the warehouse's write lock (DuckDB allows one writer per file)."""


def apply_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every warehouse table that does not exist yet (safe to call on every connect).

    Args:
        con: an open, writable DuckDB connection.
    """
    for schema_file in SCHEMA_FILES:
        con.execute(schema_file.read_text(encoding="utf-8"))


def connect(
    settings: Settings | None = None,
    *,
    path: Path | str | None = None,
    read_only: bool = False,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse, creating it and its schema when writable.

    Args:
        settings: where the warehouse lives (``settings.warehouse_path``); loaded from the
            environment when omitted.
        path: a file to open instead (``":memory:"`` for tests).
        read_only: open without the write lock (no schema changes).

    Returns:
        An open DuckDB connection; the caller closes it.

    Raises:
        WarehouseBusyError: another process holds the file's write lock.
    """
    if path is None:
        path = (settings or load_settings()).warehouse_path
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        found = re.search(r"Conflicting lock is held in (.+?) \(PID (\d+)\)", str(exc))
        holder = f"PID {found.group(2)}, {Path(found.group(1)).name}" if found else "unknown"
        raise WarehouseBusyError(
            f"the warehouse {path} is in use by another process ({holder}); "
            "wait for it to finish (one writer at a time)"
        ) from None
    if not read_only:
        apply_schema(con)
    attach_lake(con, settings, writable=not read_only)  # lake mode: usage_logs over Parquet
    return con


def open_existing(settings: Settings, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a warehouse that must already exist (commands that analyse, not ingest).

    Args:
        settings: where the warehouse lives.
        read_only: open without the write lock.

    Returns:
        An open DuckDB connection; the caller closes it.

    Raises:
        WarehouseMissingError: no warehouse file yet, with the command that creates one.
        WarehouseBusyError: another process holds the write lock.
    """
    if not Path(settings.warehouse_path).exists():
        raise WarehouseMissingError(
            f"no warehouse at {settings.warehouse_path}: ingest logs first "
            "(`llmopt ingest PATH...`) or run `llmopt simulate` then `llmopt ingest`"
        )
    return connect(settings, read_only=read_only)


def require_connection(
    con: duckdb.DuckDBPyConnection | None, needed_for: str
) -> duckdb.DuckDBPyConnection:
    """``con``, or a clear error when a step that was handed precomputed inputs needs more.

    Args:
        con: the connection a caller passed, possibly ``None``.
        needed_for: what needs it, for the message.
    """
    if con is None:
        raise ValueError(f"{needed_for}: not in the precomputed inputs and no warehouse connection")
    return con


@dataclasses.dataclass
class StatementTally:
    """How many statements ran and how long they took inside ``execute`` (may be shared by
    several connections)."""

    statements: int = 0
    seconds: float = 0.0


class MeasuredConnection:
    """A DuckDB connection that adds every ``execute`` to a :class:`StatementTally`.

    Benchmarks and tests use it to count and time the SQL a step runs. DuckDB runs a statement
    to completion inside ``execute``; fetching the result afterwards is not counted. Everything
    else is delegated to the real connection.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, tally: StatementTally | None = None) -> None:
        self._con = con
        self.tally = tally if tally is not None else StatementTally()

    def execute(self, *args: Any, **kwargs: Any) -> MeasuredConnection:
        started = time.perf_counter()
        try:
            self._con.execute(*args, **kwargs)
        finally:
            self.tally.seconds += time.perf_counter() - started
            self.tally.statements += 1
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


__all__ = [
    "SCHEMA_FILES",
    "MeasuredConnection",
    "StatementTally",
    "WarehouseBusyError",
    "WarehouseMissingError",
    "apply_schema",
    "connect",
    "open_existing",
    "require_connection",
]
