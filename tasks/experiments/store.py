"""Writing reports to the experiment tables, and small views of a report.

Every row carries the run id and the as-of date; a re-run with the same pair replaces its rows
(one transaction), so the nightly flow is idempotent. New sticky stops are recorded in the same
transaction (:mod:`tasks.experiments.stops`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from typing import Any

import duckdb

from strategies.experiments import Comparison, ExperimentReport
from tasks.experiments.sql import apply_experiments_schema
from tasks.experiments.stops import record_stops

__all__ = ["report_summary", "reports_to_json", "store_reports"]

_RESULT_FLOATS = (
    "n_control",
    "n_treatment",
    "mean_control",
    "mean_treatment",
    "effect",
    "ci_low",
    "ci_high",
    "relative",
    "relative_ci_low",
    "relative_ci_high",
    "p_value",
    "p_adjusted",
    "chance_to_win",
    "expected_loss",
)


def _num(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _result_row(run_id: str, as_of: dt.date, exp_id: str, c: Comparison) -> tuple[Any, ...]:
    return (
        run_id, as_of, exp_id, c.metric, c.role, c.variant, c.control, c.kind, c.method,
        *(_num(getattr(c, f)) for f in _RESULT_FLOATS),
        _num(c.margin), c.margin_relative, c.verdict, c.analysable, c.message,
        _num(c.p95_control), _num(c.p95_treatment),
    )  # fmt: skip


def _write(
    con: duckdb.DuckDBPyConnection,
    reports: Sequence[ExperimentReport],
    key: dict[str, Any],
    stats_table: str | None,
) -> None:
    for table in ("experiment_stats", "experiment_results", "experiment_decisions"):
        con.execute(f"DELETE FROM {table} WHERE run_id = $run_id AND as_of = $as_of", key)
    if stats_table:
        con.execute(
            f"INSERT INTO experiment_stats SELECT $run_id, $as_of, * FROM {stats_table}", key
        )
    rows = [
        _result_row(key["run_id"], key["as_of"], rep.experiment_id, c)
        for rep in reports
        for c in rep.comparisons
    ]
    if rows:
        placeholders = ", ".join(["?"] * len(rows[0]))
        con.executemany(f"INSERT INTO experiment_results VALUES ({placeholders})", rows)
    for rep in reports:
        d = rep.decision
        con.execute(
            "INSERT INTO experiment_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
            [
                key["run_id"], key["as_of"], rep.experiment_id, d.action, d.variant,
                json.dumps(list(d.reasons)), _num(d.days_needed), _num(d.units_needed),
                _num(rep.srm.p_value), rep.days_elapsed, json.dumps(rep.to_dict()),
            ],
        )  # fmt: skip


def store_reports(
    con: duckdb.DuckDBPyConnection,
    reports: Sequence[ExperimentReport],
    *,
    run_id: str,
    as_of: dt.date,
    stats_table: str | None = None,
) -> None:
    """Replace this run's rows for ``as_of`` with ``reports`` and record new stops (one
    transaction).

    Args:
        con: an open warehouse connection.
        reports: the night's reports.
        run_id: the run they belong to.
        as_of: the night analysed.
        stats_table: a table shaped like :data:`~tasks.experiments.sql.STATS_SQL`'s result to
            copy into ``experiment_stats`` (inside DuckDB), or None.
    """
    apply_experiments_schema(con)
    key = {"run_id": run_id, "as_of": as_of}
    con.execute("BEGIN TRANSACTION")
    try:
        _write(con, reports, key, stats_table)
        record_stops(con, reports, run_id=run_id, as_of=as_of)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def report_summary(report: ExperimentReport) -> dict[str, Any]:
    """A flat, small view of a report (MLflow metrics / CLI tables).

    Args:
        report: one experiment's report.
    """
    primary = [c for c in report.comparisons if c.role == "primary"]
    out: dict[str, Any] = {
        "experiment_id": report.experiment_id,
        "decision": report.decision.label,
        "days_needed": report.decision.days_needed,
        "srm_p_value": report.srm.p_value,
    }
    for c in primary:
        out[f"{c.variant}.effect"] = c.effect
        out[f"{c.variant}.p_adjusted"] = c.p_adjusted
        out[f"{c.variant}.chance_to_win"] = c.chance_to_win
    return out


def reports_to_json(reports: Sequence[ExperimentReport]) -> list[dict[str, Any]]:
    """The reports as JSON-ready dicts (``report.to_dict()`` each).

    Args:
        reports: experiment reports.
    """
    return [r.to_dict() for r in reports]
