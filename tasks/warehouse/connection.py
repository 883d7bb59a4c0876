"""The DuckDB warehouse: one connection helper that applies the schema idempotently.

All heavy data work happens in SQL on this connection; Python only sees small aggregates.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import duckdb

from tasks.core.settings import REPO_ROOT, Settings

SCHEMA_FILES: tuple[Path, ...] = tuple(
    REPO_ROOT / "data" / name
    for name in (
        "schema.sql",
        "ingest_schema.sql",
        "experiments_schema.sql",
        "monitoring_schema.sql",
    )
)


def apply_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every warehouse table that does not exist yet (safe to call on every connect)."""
    for schema_file in SCHEMA_FILES:
        con.execute(schema_file.read_text(encoding="utf-8"))


def connect(
    settings: Settings | None = None,
    *,
    path: Path | str | None = None,
    read_only: bool = False,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse (``settings.warehouse_path`` or ``path``; ``":memory:"`` for tests)."""
    if path is None:
        if settings is None:
            from tasks.core.settings import load_settings

            settings = load_settings()
        path = settings.warehouse_path
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    if not read_only:
        apply_schema(con)
    return con


def require_connection(
    con: duckdb.DuckDBPyConnection | None, needed_for: str
) -> duckdb.DuckDBPyConnection:
    """``con``, or a clear error when a step that was handed precomputed inputs needs more."""
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
    "apply_schema",
    "connect",
    "require_connection",
]
