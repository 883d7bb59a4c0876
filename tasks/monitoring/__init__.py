"""Nightly monitoring: drift, change points, anomalies, degradation rules, alerts.

The facade the nightly flow and the CLI import; the modules are ``config`` (monitoring.toml),
``inputs`` / ``histograms`` / ``sql`` (DuckDB aggregates), ``store`` (alert tables), ``notify``
(log, Apprise, summary lines) and ``run`` (one night). The math is in :mod:`strategies.monitor`;
the plot in :mod:`tasks.plots.monitoring`.
"""

from __future__ import annotations

from strategies.monitor.report import MonitoringReport, UseCaseReport
from strategies.monitor.settings import MonitoringConfig
from tasks.monitoring.config import load_monitoring_config, parse_monitoring_config
from tasks.monitoring.inputs import fetch_monitoring_inputs
from tasks.monitoring.notify import alert_lines
from tasks.monitoring.run import analyse_use_case, run_monitoring
from tasks.monitoring.store import apply_monitoring_schema, report_to_dict
from tasks.plots.monitoring import plot_monitoring

__all__ = [
    "MonitoringConfig",
    "MonitoringReport",
    "UseCaseReport",
    "alert_lines",
    "analyse_use_case",
    "apply_monitoring_schema",
    "fetch_monitoring_inputs",
    "load_monitoring_config",
    "parse_monitoring_config",
    "plot_monitoring",
    "report_to_dict",
    "run_monitoring",
]
