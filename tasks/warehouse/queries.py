"""Small warehouse questions many capabilities ask: the latest day, the use cases in a range.

One copy of each statement, so "the latest night" means the same thing to the nightly flow,
monitoring and the CLI.
"""

from __future__ import annotations

import datetime as dt

import duckdb


def latest_day(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The last UTC day with usage logs.

    Args:
        con: an open warehouse connection.

    Returns:
        The day, or ``None`` when ``usage_logs`` is empty.
    """
    row = con.execute("SELECT max(day) FROM usage_logs").fetchone()
    return None if row is None or row[0] is None else row[0]


def use_cases(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> list[str]:
    """The use cases with traffic between ``start`` and ``end`` (UTC days, inclusive), sorted.

    Args:
        con: an open warehouse connection.
        start: first day.
        end: last day.

    Returns:
        The use case names.
    """
    rows = con.execute(
        "SELECT DISTINCT use_case FROM usage_logs WHERE day BETWEEN $start AND $end ORDER BY 1",
        {"start": start, "end": end},
    ).fetchall()
    return [str(r[0]) for r in rows]


__all__ = ["latest_day", "use_cases"]
