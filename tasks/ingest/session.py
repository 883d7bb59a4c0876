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
    "MemoryLimit",
    "ingest_settings",
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


class MemoryLimit:
    """The memory limit of one ingest run: raised once, for the rest of the run, when a
    transaction runs out of the ingest's own (:data:`INGEST_MEMORY_LIMIT`).

    The memory an ingest needs is not all in its chunk: DuckDB's JSON functions keep buffers
    per 2,048-row vector, per expression and per thread, which cannot spill. For OTel lines of
    100 spans or more the limit is too little; LiteLLM spend logs with stored prompts (6 KB a
    line) needed more too until chunks were scanned in 2 MiB record batches (2026-12-01); the
    canonical shape never did. The transaction that ran out is rolled back and run again under
    :data:`RETRY_MEMORY_LIMIT`; the next ones start under it too (their first try would fail
    the same way). The run's end gives the ingest's limit back (:func:`ingest_settings` then
    gives the caller's).

    Args:
        con: the warehouse connection, under :func:`ingest_settings`.

    >>> con = duckdb.connect()
    >>> with MemoryLimit(con) as limit:
    ...     first, again = limit.raise_once(), limit.raise_once()
    ...     during = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    >>> first, again, during, con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    (True, False, '1.4 GiB', '366.2 MiB')
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.raised = False

    def __enter__(self) -> MemoryLimit:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.raised:
            with contextlib.suppress(duckdb.Error):
                self._con.execute(f"SET memory_limit = '{INGEST_MEMORY_LIMIT}'")

    def raise_once(self) -> bool:
        """Raise the limit for the rest of the run; False when it was raised already."""
        if self.raised:
            return False
        self._con.execute(f"SET memory_limit = '{RETRY_MEMORY_LIMIT}'")
        self.raised = True
        return True
