"""The DuckDB settings an ingest runs under, given back to a caller's connection unchanged.

Chunks are bounded, so a larger buffer pool buys little; with 384 MB the process (Python
chunk + DuckDB) stays under ~1 GB RSS whatever the file size. Row order inside ``usage_logs``
carries no meaning, and not keeping it speeds up inserts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import duckdb

__all__ = [
    "INGEST_MEMORY_LIMIT",
    "RETRY_MEMORY_LIMIT",
    "ingest_settings",
    "larger_memory_limit",
    "restorable_limit",
]

INGEST_MEMORY_LIMIT = "384MB"
RETRY_MEMORY_LIMIT = "1536MB"


@contextlib.contextmanager
def ingest_settings(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Settings for an ingest on ``con`` (restored after): no insertion order, bounded memory.

    Args:
        con: the warehouse connection (possibly the caller's).
    """
    names = ("preserve_insertion_order", "memory_limit")
    before = [con.execute(f"SELECT current_setting('{n}')").fetchone() for n in names]
    # row order inside usage_logs carries no meaning; not keeping it speeds up inserts
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"SET memory_limit = '{INGEST_MEMORY_LIMIT}'")
    try:
        yield
    finally:
        with contextlib.suppress(duckdb.Error):  # a closed connection keeps nothing
            if before[0] is not None:
                con.execute(f"SET preserve_insertion_order = {bool(before[0][0])}")
            if before[1] is not None:
                con.execute(f"SET memory_limit = '{restorable_limit(str(before[1][0]))}'")


def restorable_limit(shown: str) -> str:
    """A ``memory_limit`` to set back that DuckDB shows as ``shown`` again.

    DuckDB shows the limit cut to one decimal (1500MB is ``1.3 GiB``); setting that string back
    gave 1.2999 GiB, shown as ``1.2 GiB``, so each ingest on a caller's connection lowered its
    limit by a step (1.3, 1.2, 1.1, 1.0 GiB). Half a step up stays inside the range the shown
    value stands for and shows as the same string: a fixed point.

    Args:
        shown: ``current_setting('memory_limit')``.

    >>> restorable_limit("1.3 GiB")
    '1.35 GiB'
    >>> restorable_limit("366.2 MiB")
    '366.25 MiB'
    >>> restorable_limit("512 bytes")
    '512 bytes'
    """
    number, _, unit = shown.partition(" ")
    if "." not in number or not unit:
        return shown
    try:
        return f"{float(number) + 0.05:.2f} {unit}"
    except ValueError:
        return shown


@contextlib.contextmanager
def larger_memory_limit(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """``RETRY_MEMORY_LIMIT`` for one more try of a transaction that ran out of memory.

    The memory an ingest needs is not all in its chunk: DuckDB's JSON functions keep buffers
    per 2,048-row vector, per expression and per thread, which cannot spill. For wide records
    (LiteLLM spend logs with stored prompts, 6 KB a line: out of 384 MB even in chunks of
    2,048 lines, 2026-12-01) the limit is too little; for the canonical shape and for LiteLLM
    rows without prompts it is enough (their nested metadata is parsed once per line since
    2026-12-01: 800 -> 330 MB of buffers for a 122,880-line chunk). Only a transaction that
    failed gets the larger limit; the ingest's own limit comes back after it.

    Args:
        con: the warehouse connection, under :func:`ingest_settings`.
    """
    con.execute(f"SET memory_limit = '{RETRY_MEMORY_LIMIT}'")
    try:
        yield
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"SET memory_limit = '{INGEST_MEMORY_LIMIT}'")
