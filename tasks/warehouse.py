"""The DuckDB warehouse: one connection helper that applies the schema idempotently.

All heavy data work happens in SQL on this connection; Python only sees small aggregates.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from tasks.settings import REPO_ROOT, Settings

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
            from tasks.settings import load_settings

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


__all__ = ["SCHEMA_FILES", "apply_schema", "connect", "require_connection"]
