"""One monitoring night: fetch every use case's aggregates, judge each, store, notify.

The pieces: :mod:`tasks.monitoring.config` (``monitoring.toml``), :mod:`tasks.monitoring.inputs`
and :mod:`tasks.monitoring.histograms` (DuckDB aggregates; rows never reach Python),
:mod:`strategies.monitor.analysis` (the judgement, no I/O), :mod:`tasks.monitoring.store` (alerts,
runs, signals) and :mod:`tasks.monitoring.notify` (log, Apprise, summary lines); the plot is
:mod:`tasks.plots.monitoring`.

A configuration is the warehouse's configuration key (``config_id``, else
``model|prompt|t=..|p=..|mt=..``), the nightly flow's key, so production, its baseline and the
rules work on logs without ``config_id``. The rules' baseline is production's own reference
window, the ``reference_days`` before the night, never the night itself.

This module also re-exports the names callers imported from it before the split (the nightly
flow, the CLI, benchmarks); new code imports from :mod:`tasks.monitoring`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

import duckdb

from strategies.monitor.analysis import analyse_series, judge_use_case, known_production_config
from strategies.monitor.degradation import ApprovedConfig, PastAlert
from strategies.monitor.report import (
    MonitoringInputs,
    MonitoringReport,
    SeriesResult,
    UseCaseReport,
)
from strategies.monitor.settings import (
    CATEGORICAL_FIELDS,
    NUMERIC_FIELDS,
    MonitoringConfig,
    NotifierConfig,
    Windows,
    hourly_range,
    series_range,
)
from tasks.core.settings import Settings
from tasks.monitoring.config import load_monitoring_config, parse_monitoring_config
from tasks.monitoring.histograms import (
    categorical_counts,
    categorical_counts_many,
    numeric_bins,
    numeric_bins_many,
)
from tasks.monitoring.inputs import (
    fetch_monitoring_inputs,
    infer_production_config,
    infer_production_configs,
    metric_series,
    metric_series_many,
    refresh_monitoring_rollups,
    rolled_up_latest_day,
    rolled_up_use_cases,
    window_stats,
    window_stats_many,
)
from tasks.monitoring.notify import alert_lines, notify
from tasks.monitoring.sql import SERIES_METRICS
from tasks.monitoring.store import (
    MONITORING_SCHEMA,
    alert_history,
    apply_monitoring_schema,
    report_to_dict,
    store_report,
)
from tasks.plots.monitoring import plot_monitoring
from tasks.warehouse.queries import latest_day
from tasks.warehouse.queries import use_cases as monitored_use_cases


def _inferred_note(
    use_case: str,
    config: MonitoringConfig,
    inputs: MonitoringInputs,
    production_config_id: str | None,
    approved_configs: Sequence[ApprovedConfig],
) -> list[str]:
    named = (
        production_config_id is not None
        or use_case in config.production_config_ids
        or any(c.is_production for c in approved_configs)
    )
    if named or inputs.production_config_id is None:
        return []
    return [f"production configuration inferred from traffic: {inputs.production_config_id}"]


def analyse_use_case(
    con: duckdb.DuckDBPyConnection,
    use_case: str,
    *,
    as_of: dt.date,
    config: MonitoringConfig,
    history: Sequence[PastAlert] = (),
    approved_configs: Sequence[ApprovedConfig] = (),
    production_config_id: str | None = None,
    inputs: MonitoringInputs | None = None,
) -> UseCaseReport:
    """Drift, change points, anomalies, rules, deduplicated alerts and the recovery action.

    Args:
        con: warehouse connection (read only here).
        use_case: the use case.
        as_of: the night judged.
        config: the monitoring configuration.
        history: incidents seen by other runs, for de-duplication.
        approved_configs: configurations the registry could switch to.
        production_config_id: the production configuration key when known.
        inputs: the use case's aggregates when already fetched (for many use cases at once by
            :func:`fetch_monitoring_inputs`, with the same production configuration); without
            them they are fetched here for this use case alone.

    Returns:
        The use case's report.
    """
    if inputs is None:
        known = known_production_config(
            use_case,
            config,
            production_config_id=production_config_id,
            approved_configs=approved_configs,
        )
        inputs = fetch_monitoring_inputs(
            con, [use_case], as_of=as_of, config=config, production_configs={use_case: known}
        )[use_case]
    notes = _inferred_note(use_case, config, inputs, production_config_id, approved_configs)
    return judge_use_case(
        inputs, config=config, history=history, approved_configs=approved_configs, notes=notes
    )


def _known_configs(
    names: Sequence[str],
    config: MonitoringConfig,
    production: Mapping[str, str],
    approved: Mapping[str, Sequence[ApprovedConfig]],
) -> dict[str, str | None]:
    """The production configuration key of each use case when known (else ``None``)."""
    return {
        n: known_production_config(
            n, config, production_config_id=production.get(n), approved_configs=approved.get(n, ())
        )
        for n in names
    }


def run_monitoring(
    con: duckdb.DuckDBPyConnection,
    settings: Settings | None = None,
    *,
    as_of: dt.date | None = None,
    run_id: str | None = None,
    config: MonitoringConfig | None = None,
    approved_configs: Mapping[str, Sequence[ApprovedConfig]] | None = None,
    production_configs: Mapping[str, str] | None = None,
    use_cases: Sequence[str] | None = None,
    record: bool = True,
    refresh: bool = True,
) -> MonitoringReport:
    """One nightly monitoring pass over every use case with traffic (or ``use_cases``).

    Args:
        con: warehouse connection (writable when ``record``).
        settings: settings for the configuration lookup (default: from the environment).
        as_of: the night (default: the latest day with logs).
        run_id: this run's id (default ``monitor-<as_of>``); the same id replaces its rows.
        config: the configuration (default: :func:`load_monitoring_config`).
        approved_configs: per use case, the approved configurations the registry could roll
            back / switch to (``is_production`` marks the serving one).
        production_configs: the production configuration key per use case (the nightly flow's
            key: ``config_id`` or ``model|prompt|t=..|p=..|mt=..``).
        use_cases: only these use cases.
        record: store alerts and reports and notify (default); without it nothing is written
            (the CLI's read-only view). Either way, alerts another run raised for the same night
            come back as that run's (``UseCaseReport.night_alerts``), not as open incidents.
        refresh: first bring every daily rollup up to date (a count check when nothing
            changed); without it they must be fresh already.

    Returns:
        The :class:`MonitoringReport`.
    """
    config = config or load_monitoring_config(settings)
    apply_monitoring_schema(con)
    if refresh:
        refresh_monitoring_rollups(con)
    as_of = as_of or rolled_up_latest_day(con)
    if as_of is None:
        return MonitoringReport(
            run_id=run_id or "monitor-empty", as_of=dt.date.today(), use_cases=()
        )
    run_id = run_id or f"monitor-{as_of.isoformat()}"
    history = alert_history(con, until=as_of, exclude_run_id=run_id)
    windows = Windows.for_night(as_of, config)
    names = list(
        use_cases or rolled_up_use_cases(con, windows.reference_start, windows.current_end)
    )
    approved = approved_configs or {}
    production = production_configs or {}
    known = _known_configs(names, config, production, approved)
    # every use case's aggregates at once: a constant number of statements, not ~12 per use case
    inputs = fetch_monitoring_inputs(
        con, names, as_of=as_of, config=config, production_configs=known
    )
    reports = [
        analyse_use_case(
            con,
            name,
            as_of=as_of,
            config=config,
            history=history,
            approved_configs=approved.get(name, ()),
            production_config_id=production.get(name),
            inputs=inputs[name],
        )
        for name in names
    ]
    report = MonitoringReport(run_id=run_id, as_of=as_of, use_cases=tuple(reports))
    if not record:
        return report
    channels = notify(report.alerts, config.notifier)
    stored = store_report(con, report, notified_via=",".join(channels))
    return dataclasses.replace(report, alerts_stored=stored, notified=channels)


__all__ = [
    "CATEGORICAL_FIELDS",
    "MONITORING_SCHEMA",
    "NUMERIC_FIELDS",
    "SERIES_METRICS",
    "MonitoringConfig",
    "MonitoringInputs",
    "MonitoringReport",
    "NotifierConfig",
    "SeriesResult",
    "UseCaseReport",
    "Windows",
    "alert_history",
    "alert_lines",
    "analyse_series",
    "analyse_use_case",
    "apply_monitoring_schema",
    "categorical_counts",
    "categorical_counts_many",
    "fetch_monitoring_inputs",
    "hourly_range",
    "infer_production_config",
    "infer_production_configs",
    "known_production_config",
    "latest_day",
    "load_monitoring_config",
    "metric_series",
    "metric_series_many",
    "monitored_use_cases",
    "notify",
    "numeric_bins",
    "numeric_bins_many",
    "parse_monitoring_config",
    "plot_monitoring",
    "refresh_monitoring_rollups",
    "report_to_dict",
    "run_monitoring",
    "series_range",
    "store_report",
    "window_stats",
    "window_stats_many",
]
