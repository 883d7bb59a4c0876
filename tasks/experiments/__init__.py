"""Experiments on the warehouse and from CSV files; the statistics live in strategies.experiments.

The public entry points, re-exported from :mod:`tasks.experiments.analyze`:
:func:`analyze_warehouse_experiments` (alias ``analyze_experiments``),
:func:`plot_experiment_intervals`, :func:`analyze_stats_csv`, :func:`reset_stop`.
"""

from __future__ import annotations

from tasks.experiments.analyze import (
    StatsFileError,
    analyze_experiments,
    analyze_stats_csv,
    analyze_warehouse_experiments,
    experiment_spec,
    plot_experiment_intervals,
)
from tasks.experiments.stops import ExperimentResetError, active_stop, reset_stop

__all__ = [
    "ExperimentResetError",
    "StatsFileError",
    "active_stop",
    "analyze_experiments",
    "analyze_stats_csv",
    "analyze_warehouse_experiments",
    "experiment_spec",
    "plot_experiment_intervals",
    "reset_stop",
]
