"""Where monitoring runs leave their trace: ``monitoring_alerts``, ``monitoring_runs``,
``monitoring_signals`` (``data/monitoring_schema.sql``), and the history de-duplication reads."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import duckdb

from strategies.monitor.degradation import PastAlert
from strategies.monitor.report import MonitoringReport, UseCaseReport
from tasks.core.jsonable import to_jsonable
from tasks.core.settings import REPO_ROOT

MONITORING_SCHEMA = REPO_ROOT / "data" / "monitoring_schema.sql"


def apply_monitoring_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the monitoring tables if missing (idempotent).

    Args:
        con: warehouse connection (writable).
    """
    con.execute(MONITORING_SCHEMA.read_text(encoding="utf-8"))


def alert_history(
    con: duckdb.DuckDBPyConnection,
    *,
    until: dt.date,
    days: int = 60,
    exclude_run_id: str | None = None,
) -> list[PastAlert]:
    """Incidents seen (raised or suppressed) from ``days`` before ``until`` to ``until``.

    Args:
        con: warehouse connection.
        until: the night being judged (its own signals from other runs are included: the
            de-duplication tells them apart).
        days: how far back to look.
        exclude_run_id: the run being redone, so re-running a night re-raises its own alerts
            instead of suppressing them against themselves.

    Returns:
        One :class:`PastAlert` per (run, incident), with its run id.
    """
    rows = con.execute(
        "SELECT incident_key, as_of, raised, run_id FROM monitoring_signals"
        " WHERE as_of BETWEEN $start AND $end AND ($run_id IS NULL OR run_id <> $run_id)",
        {"start": until - dt.timedelta(days=days), "end": until, "run_id": exclude_run_id},
    ).fetchall()
    return [
        PastAlert(incident_key=str(k), as_of=d, raised=bool(r), run_id=str(run))
        for k, d, r, run in rows
    ]


def report_to_dict(report: MonitoringReport | UseCaseReport) -> dict[str, Any]:
    """The report as plain JSON values (what ``monitoring_runs.report`` stores).

    Args:
        report: a whole run's report or one use case's.

    Returns:
        A JSON-ready dict (with ``summary`` for a whole run).
    """
    data: dict[str, Any] = to_jsonable(report)
    if isinstance(report, MonitoringReport):
        data["summary"] = report.summary()
    return data


def _delete_run(con: duckdb.DuckDBPyConnection, run_id: str, names: list[str]) -> None:
    for table in ("monitoring_alerts", "monitoring_runs"):
        con.execute(
            f"DELETE FROM {table} WHERE run_id = ? AND list_contains(?, use_case)", [run_id, names]
        )
    con.execute(
        "DELETE FROM monitoring_signals WHERE run_id = ? "
        "AND list_contains(?, split_part(incident_key, '|', 1))",
        [run_id, names],
    )


def _insert_use_case(
    con: duckdb.DuckDBPyConnection, report: MonitoringReport, uc: UseCaseReport, notified_via: str
) -> int:
    seen = [(a.incident_key, True) for a in uc.alerts]
    seen += [(s.alert.incident_key, False) for s in uc.suppressed]
    first: dict[str, bool] = {}
    for key, raised in seen:
        first.setdefault(key, raised)
    for key, raised in first.items():
        con.execute(
            "INSERT INTO monitoring_signals VALUES (?, ?, ?, ?)",
            [report.run_id, report.as_of, key, raised],
        )
    action = uc.action
    for alert in uc.alerts:
        acting = (
            action
            if action is not None and alert.kind == "rule" and action.rule == alert.name
            else None
        )
        con.execute(
            """
            INSERT INTO monitoring_alerts (alert_id, incident_key, run_id, as_of, use_case,
                kind, name, severity, message, details, action_kind, target_config_id,
                notified_via)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                f"{report.run_id}|{alert.incident_key}",
                alert.incident_key,
                report.run_id,
                report.as_of,
                alert.use_case,
                alert.kind,
                alert.name,
                alert.severity,
                alert.message,
                json.dumps(to_jsonable(alert.details)),
                acting.kind if acting else None,
                acting.target_config_id if acting else None,
                notified_via,
            ],
        )
    con.execute(
        "INSERT INTO monitoring_runs (run_id, as_of, use_case, status, action_kind, report)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            report.run_id,
            report.as_of,
            uc.use_case,
            uc.status,
            action.kind if action else None,
            json.dumps(report_to_dict(uc)),
        ],
    )
    return len(uc.alerts)


def store_report(
    con: duckdb.DuckDBPyConnection, report: MonitoringReport, *, notified_via: str
) -> int:
    """Insert the report's new alerts, its signals and one run row per use case.

    Re-running a run id replaces its rows (idempotent), in one transaction.

    Args:
        con: warehouse connection (writable).
        report: the run's report.
        notified_via: the channels used (``log``, ``apprise:<n>``), stored with each alert.

    Returns:
        The number of alerts stored.
    """
    names = [u.use_case for u in report.use_cases]  # one run's use cases may be stored apart
    con.execute("BEGIN TRANSACTION")
    try:
        _delete_run(con, report.run_id, names)
        stored = sum(_insert_use_case(con, report, uc, notified_via) for uc in report.use_cases)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return stored


__all__ = [
    "MONITORING_SCHEMA",
    "alert_history",
    "apply_monitoring_schema",
    "report_to_dict",
    "store_report",
]
