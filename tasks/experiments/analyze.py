"""Experiment analysis on the warehouse: SQL sufficient statistics in, stored decisions out.

The warehouse is looked at every night, so its analysis is always a *nightly* look
(``looks="nightly"`` in :func:`~strategies.experiments.analyze_experiment`): the always-valid
SRM test, the per-method nightly rules (fixed decides once, at its horizon; bayesian is refused)
and sticky stops that hold until a person resets them (:mod:`tasks.experiments.stops`).

Metrics whose units all have exactly one observation are analysed in their native kind (mean,
proportion); otherwise as ratio metrics with the delta method (sum over units of the metric /
sum of its observations), which is the correct variance for unit-randomized per-call metrics.
Latency is guarded on its mean; the per-arm p95 (``quantile_cont``; on the rollups, from
fixed log-spaced bins, within 1%) is reported beside it.

Where the sums come from: the daily rollups of :mod:`tasks.experiments.rollups` (per experiment x
variant x unit x day sums, refreshed each night for the days that changed) whenever they are
current, so a nightly look never scans raw rows (and, on a writable connection, recomputes the
statistics' daily increments only from each experiment's first changed day:
:mod:`tasks.experiments.increments`); otherwise (a warehouse never rolled up, rows
ingested since the last refresh) the same statements over ``usage_logs``. Both give the same
statistics (a test over a simulated month with late rows); ``source`` forces one.

Entry point: :func:`analyze_warehouse_experiments` (the CLI and the nightly flow).
``analyze_experiments`` is the same function under its former name, kept for
``tasks/nightly/night.py`` (whose own ``analyse_experiments`` wraps it for a night).
The modules: :mod:`.sql` (statements, schema), :mod:`.spec` (configuration), :mod:`.store`
(tables), :mod:`.stops` (sticky stops), :mod:`.csv` (``llmopt stats``) and
:mod:`tasks.plots.experiments` (the interval plot); this module re-exports their public names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import duckdb
import numpy as np

from strategies.experiments import (
    NIGHTLY_LOOKS,
    ExperimentReport,
    ExperimentSpec,
    MetricData,
    analysis_days,
    analyze_experiment,
)
from tasks.experiments.csv import CSV_KINDS, StatsFileError, analyze_stats_csv, stats_object
from tasks.experiments.increments import LOOKS_SQL, refresh_increments
from tasks.experiments.rollups import (
    CROSSOVER_ROLLUP_SQL,
    EXPERIMENT_READS,
    EXTRAS_ROLLUP_SQL,
    LAST_DAY_ROLLUP_SQL,
    STATS_ROLLUP_SQL,
    latency_p95,
    rollups_current,
)
from tasks.experiments.spec import _SPEC_KEYS, experiment_spec
from tasks.experiments.sql import (
    CROSSOVER_SQL,
    EXTRAS_SQL,
    METRIC_COLUMNS,
    METRICS,
    SCHEMA_FILE,
    STATS_SQL,
    apply_experiments_schema,
)
from tasks.experiments.stops import active_stop, srm_baseline
from tasks.experiments.store import report_summary, reports_to_json, store_reports
from tasks.plots.experiments import plot_experiment_intervals

__all__ = [
    "CROSSOVER_SQL",
    "CSV_KINDS",
    "EXTRAS_SQL",
    "METRICS",
    "METRIC_COLUMNS",
    "SCHEMA_FILE",
    "STATS_SQL",
    "_SPEC_KEYS",
    "StatsFileError",
    "analyze_experiments",
    "analyze_stats_csv",
    "analyze_warehouse_experiments",
    "apply_experiments_schema",
    "experiment_spec",
    "plot_experiment_intervals",
    "report_summary",
    "reports_to_json",
    "store_reports",
]

_STATS_TEMP = "experiment_stats_current"

Source = Literal["auto", "rollups", "usage_logs"]


@dataclass(frozen=True, kw_only=True)
class _Statements:
    """The four reads of a nightly look, over the rollups or over the raw rows."""

    stats: str
    extras: str
    crossover: str
    last_day: str
    rollups: bool


_RAW = _Statements(
    stats=STATS_SQL,
    extras=EXTRAS_SQL,
    crossover=CROSSOVER_SQL,
    last_day="SELECT max(day) FROM usage_logs WHERE experiment_id IS NOT NULL",
    rollups=False,
)
_ROLLUPS = _Statements(
    stats=STATS_ROLLUP_SQL,
    extras=EXTRAS_ROLLUP_SQL,
    crossover=CROSSOVER_ROLLUP_SQL,
    last_day=LAST_DAY_ROLLUP_SQL,
    rollups=True,
)


def _statements(con: duckdb.DuckDBPyConnection, source: Source) -> _Statements:
    """Raw statements, or rollup ones; on a writable connection the looks cumulate the stored
    daily increments, recomputed from each experiment's first changed day only."""
    if source == "usage_logs":
        return _RAW
    if source == "rollups" or rollups_current(con, EXPERIMENT_READS):
        if _read_only(con):
            return _ROLLUPS
        refresh_increments(con)
        return replace(_ROLLUPS, stats=LOOKS_SQL)
    return _RAW


def _read_only(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute(
        "SELECT readonly FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()
    return bool(rows and rows[0][0])


def _metric_data(
    stats: Sequence[tuple[Any, ...]],
    arms: list[str],
    looks: list[dt.date],
    p95: Mapping[str, float | None],
) -> list[MetricData]:
    """An (arm, look) grid per metric; an arm without rows at a look keeps its totals."""
    grid: dict[str, np.ndarray] = {}
    look_idx = {d: i for i, d in enumerate(looks)}
    arm_idx = {a: i for i, a in enumerate(arms)}
    for _, variant, metric, look, *values in stats:
        if look not in look_idx:
            continue
        cube = grid.setdefault(metric, np.full((len(arms), len(looks), 7), np.nan))
        cube[arm_idx[variant], look_idx[look]] = values
    out: list[MetricData] = []
    for metric, cube in grid.items():
        native, higher = METRICS[metric]
        for t in range(1, len(looks)):  # forward fill: a day without rows keeps the totals
            missing = np.isnan(cube[:, t, 0])
            cube[missing, t] = cube[missing, t - 1]
        np.nan_to_num(cube, nan=0.0, copy=False)
        several = bool(np.any(cube[:, :, 6] > 1))
        kind = "ratio" if several or native == "ratio" else native
        out.append(
            MetricData(
                metric=metric,
                kind=kind,
                arms=tuple(arms),
                stats=tuple(stats_object(kind, cube[a]) for a in range(len(arms))),
                higher_is_better=higher,
                p95=tuple(p95.get(a) for a in arms) if metric == "latency_ms" else None,
            )
        )
    return out


@dataclass(frozen=True, kw_only=True)
class _Night:
    """What every experiment of one night shares."""

    con: duckdb.DuckDBPyConnection
    config: Mapping[str, Any]
    as_of: dt.date
    info: Mapping[str, Mapping[str, Mapping[str, Any]]]  # experiment -> variant -> extras
    crossover: Mapping[str, int]


def _analyse_one(
    night: _Night, spec: ExperimentSpec, rows: Sequence[tuple[Any, ...]]
) -> ExperimentReport:
    """One experiment's nightly look: its grid (up to the horizon for fixed), stop, SRM base."""
    exp_id = spec.experiment_id
    arm_info = night.info[exp_id]
    variants = sorted(arm_info)
    arms = [spec.control] if spec.control in variants else []
    arms += [v for v in variants if v not in arms]
    first = min(v["first_day"] for v in arm_info.values())
    days_elapsed = (night.as_of - first).days + 1
    horizon = analysis_days(spec, days_elapsed=days_elapsed)
    last_look = night.as_of if horizon is None else first + dt.timedelta(days=horizon - 1)
    looks = sorted({r[3] for r in rows if r[3] <= last_look})
    metrics = _metric_data(rows, arms, looks, {v: d["p95"] for v, d in arm_info.items()})
    baseline = srm_baseline(night.con, exp_id, as_of=night.as_of)
    units = {v: max(d["units"] - baseline.get(v, 0.0), 0.0) for v, d in arm_info.items()}
    report = analyze_experiment(
        spec,
        metrics,
        unit_counts=units,
        days_elapsed=days_elapsed if horizon is None else horizon,
        as_of=night.as_of.isoformat(),
        looks=NIGHTLY_LOOKS,
        stop=active_stop(night.con, exp_id, as_of=night.as_of),
    )
    notes = list(report.notes)
    if exp_id not in night.config.get("experiments", {}):
        notes.append("not configured in experiments.toml: analysed with [defaults]")
    if night.crossover.get(exp_id):
        notes.append(
            f"{night.crossover[exp_id]} unit(s) seen in more than one variant (assignment leak)"
        )
    if horizon is not None:
        notes.append(f"fixed horizon: analysed the data up to {last_look} (day {horizon})")
    if baseline:
        notes.append("SRM counts units first seen after the last reset")
    return replace(report, notes=tuple(notes))


def analyze_warehouse_experiments(
    con: duckdb.DuckDBPyConnection,
    config: Mapping[str, Any],
    *,
    as_of: dt.date | None = None,
    run_id: str,
    experiments: Sequence[str] | None = None,
    store: bool = True,
    source: Source = "auto",
) -> list[ExperimentReport]:
    """Analyse every experiment in ``usage_logs`` with data up to ``as_of`` (a nightly look).

    Args:
        con: an open warehouse connection.
        config: the parsed ``experiments.toml`` (``load_config("experiments", settings)``).
        as_of: the last day analysed (default: the last day with experiment traffic).
        run_id: the run the results are stored under.
        experiments: only these experiment ids (default: all).
        store: write statistics, results, decisions and new stops under ``(run_id, as_of)``,
            replacing what the same run id wrote before for that date.
        source: ``"rollups"`` (the daily rollups of :mod:`tasks.experiments.rollups`),
            ``"usage_logs"`` (a full scan, the reference) or ``"auto"``: the rollups when they
            are current (:func:`~tasks.experiments.rollups.rollups_current`), else the scan.

    Returns:
        One report per experiment (``report.to_dict()`` is JSON), ordered by experiment id.

    Raises:
        ConfigError: ``config`` has an unusable key or value.
    """
    apply_experiments_schema(con)
    sql = _statements(con, source)
    if as_of is None:
        last = con.execute(sql.last_day)
        row = last.fetchone()
        if row is None or row[0] is None:
            return []
        as_of = row[0]
    params = {"as_of": as_of, "experiments": list(experiments) if experiments else None}
    # the statistics stay in DuckDB (a temp table, per connection) for storing; Python reads
    # only these few hundred aggregate rows
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_STATS_TEMP} AS {sql.stats}", params)
    by_exp: dict[str, list[tuple[Any, ...]]] = {}
    for row in con.execute(f"SELECT * FROM {_STATS_TEMP}").fetchall():
        by_exp.setdefault(row[0], []).append(row)
    info: dict[str, dict[str, dict[str, Any]]] = {}
    binned = latency_p95(con, params) if sql.rollups else {}
    for exp_id, variant, scanned_p95, first_day, units, use_case in con.execute(
        sql.extras, params
    ).fetchall():
        p95 = binned.get((exp_id, variant), scanned_p95)
        info.setdefault(exp_id, {})[variant] = {
            "p95": None if p95 is None else float(p95),
            "first_day": first_day,
            "units": float(units),
            "use_case": use_case,
        }
    crossover = dict(con.execute(sql.crossover, {"as_of": as_of}).fetchall())
    night = _Night(con=con, config=config, as_of=as_of, info=info, crossover=crossover)
    reports: list[ExperimentReport] = []
    for exp_id in sorted(by_exp):
        spec = experiment_spec(exp_id, config)
        if spec is not None:
            reports.append(_analyse_one(night, spec, by_exp[exp_id]))
    if store:
        store_reports(con, reports, run_id=run_id, as_of=as_of, stats_table=_STATS_TEMP)
    con.execute(f"DROP TABLE IF EXISTS {_STATS_TEMP}")
    return reports


# The former name, kept importable for tasks/nightly/night.py (same function, same arguments).
analyze_experiments = analyze_warehouse_experiments
