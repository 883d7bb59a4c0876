"""Sticky stops in the warehouse: record a night's stop, find the one in force, reset it.

Why: re-deciding every night let an experiment stopped for a sample-ratio mismatch run again two
nights later, once the cumulative counts drifted back under the threshold. A stop is a finding
about the data pipeline or about harm, and only a person can say it is resolved. So the first
night that decides ``stop: SRM`` or ``stop: harm`` writes a row to ``experiment_stops``; every
later night reports that stop (with its own reading beside it) until ``llmopt experiments reset
ID --reason TEXT`` fills the row's ``reset_*`` columns. Rows are never deleted: the table is the
audit trail. After a reset the SRM test restarts on the units first seen after the reset day.
The units baseline of a reset is counted on the daily rollup of units
(:data:`tasks.experiments.rollups.UNITS_ROLLUP_SQL`) when it is current, else on ``usage_logs``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
from collections.abc import Sequence
from typing import Any

import duckdb

from strategies.experiments import NIGHTLY_LOOKS, STICKY_ACTIONS, ActiveStop, ExperimentReport
from tasks.core.errors import LlmoptError
from tasks.experiments.rollups import EXPERIMENT_READS, UNITS_ROLLUP_SQL, rollups_current
from tasks.experiments.sql import apply_experiments_schema

__all__ = [
    "ExperimentResetError",
    "active_stop",
    "record_stops",
    "reset_stop",
    "srm_baseline",
]

_ACTIVE_SQL = """
SELECT action, variant_id, CAST(stopped_on AS VARCHAR), reasons
FROM experiment_stops
WHERE experiment_id = $experiment AND stopped_on <= $as_of AND reset_at IS NULL
ORDER BY stopped_on, created_at
LIMIT 1
"""

_BASELINE_SQL = """
SELECT reset_units
FROM experiment_stops
WHERE experiment_id = $experiment AND reset_on IS NOT NULL AND reset_on <= $as_of
ORDER BY reset_on DESC, reset_at DESC
LIMIT 1
"""

_UNITS_SQL = """
SELECT variant_id, count(DISTINCT coalesce(unit_id, request_id)) AS units, max(day) AS last_day
FROM usage_logs
WHERE experiment_id = $experiment AND variant_id IS NOT NULL
GROUP BY ALL
"""


class ExperimentResetError(LlmoptError, ValueError):
    """A reset that cannot be done (no stop in force for that experiment, empty reason)."""


def active_stop(
    con: duckdb.DuckDBPyConnection, experiment_id: str, *, as_of: dt.date
) -> ActiveStop | None:
    """The stop in force for ``experiment_id`` on night ``as_of`` (decided on or before it).

    Args:
        con: an open warehouse connection (the experiment tables exist).
        experiment_id: the experiment.
        as_of: the night being analysed.
    """
    row = con.execute(_ACTIVE_SQL, {"experiment": experiment_id, "as_of": as_of}).fetchone()
    if row is None:
        return None
    action, variant, since, reasons = row
    return ActiveStop(
        action=action, variant=variant, since=since, reasons=tuple(json.loads(reasons))
    )


def srm_baseline(
    con: duckdb.DuckDBPyConnection, experiment_id: str, *, as_of: dt.date
) -> dict[str, float]:
    """Units per arm up to the last reset on or before ``as_of`` (empty: no reset).

    Args:
        con: an open warehouse connection (the experiment tables exist).
        experiment_id: the experiment.
        as_of: the night being analysed.
    """
    row = con.execute(_BASELINE_SQL, {"experiment": experiment_id, "as_of": as_of}).fetchone()
    if row is None or row[0] is None:
        return {}
    return {str(k): float(v) for k, v in json.loads(row[0]).items()}


def record_stops(
    con: duckdb.DuckDBPyConnection,
    reports: Sequence[ExperimentReport],
    *,
    run_id: str,
    as_of: dt.date,
) -> int:
    """Write a row for every report that stops tonight for the first time (no ``since``).

    Args:
        con: an open warehouse connection, inside the caller's transaction.
        reports: the night's reports.
        run_id: the run that decided.
        as_of: the night.

    Returns:
        How many stops were recorded.
    """
    new = [
        r
        for r in reports
        if r.looks == NIGHTLY_LOOKS
        and r.decision.action in STICKY_ACTIONS
        and r.decision.since is None
    ]
    for rep in new:
        d = rep.decision
        con.execute(
            "INSERT INTO experiment_stops (experiment_id, stopped_on, action, variant_id, "
            "reasons, run_id) VALUES (?, ?, ?, ?, ?, ?)",
            [rep.experiment_id, as_of, d.action, d.variant, json.dumps(list(d.reasons)), run_id],
        )
    return len(new)


def reset_stop(
    con: duckdb.DuckDBPyConnection, experiment_id: str, *, reason: str, by: str | None = None
) -> dict[str, Any]:
    """Lift the stop(s) in force for ``experiment_id``; the SRM test restarts after today.

    Args:
        con: an open warehouse connection (writable).
        experiment_id: the experiment to reset.
        reason: why (required, kept in the audit trail).
        by: who resets (default: the operating-system user).

    Returns:
        What was reset: experiment, stops lifted (action and day), the day the SRM test
        restarts after, the units baseline, who and why.

    Raises:
        ExperimentResetError: empty reason, or no stop in force for the experiment.
    """
    if not reason.strip():
        raise ExperimentResetError("a reset needs a reason: --reason TEXT")
    apply_experiments_schema(con)
    stops = con.execute(
        "SELECT action, CAST(stopped_on AS VARCHAR) FROM experiment_stops "
        "WHERE experiment_id = ? AND reset_at IS NULL ORDER BY stopped_on",
        [experiment_id],
    ).fetchall()
    if not stops:
        raise ExperimentResetError(f"experiment {experiment_id!r} has no stop in force to reset")
    units_sql = UNITS_ROLLUP_SQL if rollups_current(con, EXPERIMENT_READS) else _UNITS_SQL
    units = con.execute(units_sql, {"experiment": experiment_id}).fetchall()
    baseline = {str(v): float(n) for v, n, _ in units}
    last_day = max((d for _, _, d in units), default=None)
    who = by or _os_user()
    con.execute(
        "UPDATE experiment_stops SET reset_at = now(), reset_by = ?, reset_reason = ?, "
        "reset_on = ?, reset_units = ? WHERE experiment_id = ? AND reset_at IS NULL",
        [who, reason.strip(), last_day, json.dumps(baseline), experiment_id],
    )
    return {
        "experiment_id": experiment_id,
        "reset": [{"action": a, "stopped_on": s} for a, s in stops],
        "srm_restarts_after": None if last_day is None else str(last_day),
        "units_baseline": baseline,
        "by": who,
        "reason": reason.strip(),
    }


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"
