"""Experiment analysis on the warehouse: SQL sufficient statistics in, stored decisions out.

Why per unit: experiments randomize by ``unit_id`` (a user), and a heavy user's calls are
correlated (same user, same difficulty), so treating calls as independent understates the
variance and produces false winners. One DuckDB statement (:data:`STATS_SQL`) therefore sums
every metric per randomization unit (``unit_id``, else ``request_id``) and day, turns those into
*daily increments* of the per-unit sufficient statistics (``n``, sums, squares and
cross-products of each unit's running totals: ``(N + dn)^2 - N^2 = 2 N dn + dn^2``), and
cumulates the days up to each look with a window sum. The result, per experiment x variant x
metric x look day, is exactly the statistics of each unit's totals as of that day (a test checks
it against pandas on raw rows). Rows never leave DuckDB.

Metrics whose units all have exactly one observation are analysed in their native kind (mean,
proportion); otherwise as ratio metrics with the delta method (sum over units of the metric /
sum of its observations), which is the correct variance for unit-randomized per-call metrics.
Latency is guarded on its mean (a difference of means has a well-behaved variance); the per-arm
p95 (``quantile_cont``) is reported beside it, not tested.

Entry points: :func:`analyze_experiments` (nightly flow and CLI) and
:func:`plot_experiment_intervals` (MLflow artifact).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from strategies.experiments import (
    ExperimentReport,
    ExperimentSpec,
    Guardrail,
    MeanStats,
    MetricData,
    ProportionStats,
    RatioStats,
    analyze_experiment,
)
from strategies.experiments.stats import ArmStats
from tasks.config import ConfigError
from tasks.settings import REPO_ROOT

SCHEMA_FILE = REPO_ROOT / "data" / "experiments_schema.sql"

# metric -> (native kind, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "quality": ("mean", True),
    "positive_feedback": ("proportion", True),
    "error_rate": ("proportion", False),
    "cost_usd": ("mean", False),
    "latency_ms": ("mean", False),
    "tokens_per_request": ("ratio", False),
}

STATS_SQL_TEMPLATE = """
WITH unit_day AS (          -- the one pass over the rows: per unit and day, every metric
    SELECT experiment_id, variant_id, coalesce(unit_id, request_id) AS unit, day,
        coalesce(sum(quality), 0) AS quality_num, count(quality) AS quality_den,
        count(*) FILTER (WHERE feedback = 1) AS feedback_num, count(feedback) AS feedback_den,
        count(*) FILTER (WHERE status <> 'success') AS error_num,
        count(*) AS requests,
        sum(cost_usd) AS cost_num, sum(latency_ms) AS latency_num,
        sum(input_tokens + output_tokens) AS tokens_num
    FROM usage_logs
    WHERE experiment_id IS NOT NULL AND variant_id IS NOT NULL AND day <= $as_of
      AND ($experiments IS NULL OR list_contains($experiments, experiment_id))
    GROUP BY ALL
),
running AS (                -- each unit's totals before today (one sort, all metrics)
    SELECT *, {prev_columns}
    FROM unit_day
    WINDOW before_today AS (
        PARTITION BY experiment_id, variant_id, unit ORDER BY day)
),
long AS (                   -- one row per unit x day x metric: today's and earlier totals
{metric_selects}
),
daily AS (                  -- daily increments of the per-unit sufficient statistics:
    -- (N + dn)^2 - N^2 = 2 N dn + dn^2, likewise for den^2 and num * den; a unit counts in n
    -- from the first day its denominator is positive. Kahan sums (fsum) keep the digits.
    SELECT experiment_id, variant_id, metric, day,
        count(*) FILTER (WHERE d_prev = 0 AND dd > 0) AS n_new,
        fsum(dn) AS num_sum, fsum(2 * n_prev * dn + dn * dn) AS num_sum_squares,
        fsum(dd) AS den_sum, fsum(2 * d_prev * dd + dd * dd) AS den_sum_squares,
        fsum(n_prev * dd + d_prev * dn + dn * dd) AS sum_products,
        max(d_prev + dd) AS max_den
    FROM long
    GROUP BY ALL
)
SELECT experiment_id, variant_id, metric, day AS look_day,   -- cumulate days up to each look
    sum(n_new) OVER upto AS n,
    sum(num_sum) OVER upto AS num_sum, sum(num_sum_squares) OVER upto AS num_sum_squares,
    sum(den_sum) OVER upto AS den_sum, sum(den_sum_squares) OVER upto AS den_sum_squares,
    sum(sum_products) OVER upto AS sum_products, max(max_den) OVER upto AS max_den
FROM daily
WINDOW upto AS (PARTITION BY experiment_id, variant_id, metric ORDER BY day
                ROWS UNBOUNDED PRECEDING)
ORDER BY experiment_id, variant_id, metric, look_day
"""

# metric -> (per-unit numerator column, per-unit denominator column) in unit_day
METRIC_COLUMNS: dict[str, tuple[str, str]] = {
    "quality": ("quality_num", "quality_den"),
    "positive_feedback": ("feedback_num", "feedback_den"),
    "error_rate": ("error_num", "requests"),
    "cost_usd": ("cost_num", "requests"),
    "latency_ms": ("latency_num", "requests"),
    "tokens_per_request": ("tokens_num", "requests"),
}

_NUMS_DENS = sorted({c for pair in METRIC_COLUMNS.values() for c in pair})
STATS_SQL = STATS_SQL_TEMPLATE.replace(
    "{metric_selects}",
    "\n    UNION ALL\n".join(
        f"    SELECT experiment_id, variant_id, unit, day, '{m}' AS metric, "
        f"CAST({num} AS DOUBLE) AS dn, CAST({den} AS DOUBLE) AS dd, "
        f"CAST(prev_{num} AS DOUBLE) AS n_prev, CAST(prev_{den} AS DOUBLE) AS d_prev "
        "FROM running"
        for m, (num, den) in METRIC_COLUMNS.items()
    ),
).replace(
    "{prev_columns}",
    ", ".join(f"sum({c}) OVER before_today - {c} AS prev_{c}" for c in _NUMS_DENS),
)

EXTRAS_SQL = """
SELECT experiment_id, variant_id,
    quantile_cont(latency_ms, 0.95) AS latency_p95,
    min(day) AS first_day,
    count(DISTINCT coalesce(unit_id, request_id)) AS units,
    any_value(use_case) AS use_case
FROM usage_logs
WHERE experiment_id IS NOT NULL AND variant_id IS NOT NULL AND day <= $as_of
  AND ($experiments IS NULL OR list_contains($experiments, experiment_id))
GROUP BY ALL
"""

CROSSOVER_SQL = """
SELECT experiment_id, count(*) AS units
FROM (
    SELECT experiment_id, coalesce(unit_id, request_id) AS unit
    FROM usage_logs
    WHERE experiment_id IS NOT NULL AND variant_id IS NOT NULL AND day <= $as_of
    GROUP BY ALL HAVING count(DISTINCT variant_id) > 1
)
GROUP BY ALL
"""


def apply_experiments_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the experiment tables (until the lead lists the file in warehouse.SCHEMA_FILES)."""
    con.execute(SCHEMA_FILE.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- configuration


_SPEC_KEYS = {
    "method",
    "alpha",
    "srm_alpha",
    "correction",
    "n_star",
    "power",
    "mde",
    "min_days",
    "max_days",
    "chance_threshold",
    "prior_mean",
    "prior_sd",
    "primary",
    "secondary",
    "guardrails",
    "control",
    "weights",
    "use_case",
    "enabled",
}


def experiment_spec(experiment_id: str, config: Mapping[str, Any]) -> ExperimentSpec | None:
    """The spec of one experiment: ``[defaults]`` overridden by ``[experiments."<id>"]``.

    None when the experiment is disabled (``enabled = false``); :class:`ConfigError` naming the
    key when a value is unusable.
    """
    defaults = dict(config.get("defaults", {}))
    own = dict(config.get("experiments", {}).get(experiment_id, {}))
    where = f"experiments.toml [experiments.{experiment_id!r}]"
    for key in (*defaults, *own):
        if key not in _SPEC_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}")
    merged = {**defaults, **own}
    if not merged.pop("enabled", True):
        return None
    try:
        guardrails = tuple(
            Guardrail(
                metric=str(g["metric"]),
                margin=float(g["margin"]),
                relative=bool(g.get("relative", True)),
            )
            for g in merged.pop("guardrails", [])
        )
        weights = tuple((str(k), float(v)) for k, v in dict(merged.pop("weights", {})).items())
        secondary = tuple(str(s) for s in merged.pop("secondary", []))
        for name in (merged.get("primary", "quality"), *secondary, *(g.metric for g in guardrails)):
            if name not in METRICS:
                raise ConfigError(f"{where}: unknown metric {name!r}; known: {sorted(METRICS)}")
        return ExperimentSpec(
            experiment_id=experiment_id,
            guardrails=guardrails,
            weights=weights,
            secondary=secondary,
            **merged,
        )
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


# ---------------------------------------------------------------------------- SQL -> MetricData


def _stats_object(kind: str, rows: np.ndarray) -> ArmStats:
    """rows: (looks, 7) array of n, num_sum, num_ss, den_sum, den_ss, products, max_den."""
    n, s, ss, ds, dss, sp = (rows[:, i] for i in range(6))
    if kind == "mean":
        return MeanStats(n=n, sum=s, sum_squares=ss)
    if kind == "proportion":
        return ProportionStats(n=n, successes=s)
    return RatioStats(
        n=n, num_sum=s, num_sum_squares=ss, den_sum=ds, den_sum_squares=dss, sum_products=sp
    )


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
        cube = grid.setdefault(metric, np.full((len(arms), len(looks), 7), np.nan))
        cube[arm_idx[variant], look_idx[look]] = values
    out: list[MetricData] = []
    for metric, cube in grid.items():
        native, higher = METRICS[metric]
        # a day without rows for an arm keeps its cumulative totals (forward fill)
        for t in range(1, len(looks)):
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
                stats=tuple(_stats_object(kind, cube[a]) for a in range(len(arms))),
                higher_is_better=higher,
                p95=tuple(p95.get(a) for a in arms) if metric == "latency_ms" else None,
            )
        )
    return out


# ---------------------------------------------------------------------------- entry points


def analyze_experiments(
    con: duckdb.DuckDBPyConnection,
    config: Mapping[str, Any],
    *,
    as_of: dt.date | None = None,
    run_id: str,
    experiments: Sequence[str] | None = None,
    store: bool = True,
) -> list[ExperimentReport]:
    """Analyse every experiment in ``usage_logs`` with data up to ``as_of`` (default: last day).

    ``config`` is ``load_config("experiments", settings)``. With ``store`` the statistics,
    results and decisions are written to the experiment tables under ``(run_id, as_of)``,
    replacing what the same run id wrote before for that date. Returns one report per
    experiment (JSON-serialisable via ``report.to_dict()``), ordered by experiment id.
    """
    apply_experiments_schema(con)
    if as_of is None:
        last = con.execute(
            "SELECT max(day) FROM usage_logs WHERE experiment_id IS NOT NULL"
        ).fetchone()
        if last is None or last[0] is None:
            return []
        as_of = last[0]
    params = {"as_of": as_of, "experiments": list(experiments) if experiments else None}
    # the statistics stay in DuckDB (a temp table, per connection) for storing; Python reads
    # only these few hundred aggregate rows
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_STATS_TEMP} AS {STATS_SQL}", params)
    stats = con.execute(f"SELECT * FROM {_STATS_TEMP}").fetchall()
    extras = con.execute(EXTRAS_SQL, params).fetchall()
    crossover = dict(con.execute(CROSSOVER_SQL, {"as_of": as_of}).fetchall())
    by_exp: dict[str, list[tuple[Any, ...]]] = {}
    for row in stats:
        by_exp.setdefault(row[0], []).append(row)
    info: dict[str, dict[str, dict[str, Any]]] = {}
    for exp_id, variant, p95, first_day, units, use_case in extras:
        info.setdefault(exp_id, {})[variant] = {
            "p95": None if p95 is None else float(p95),
            "first_day": first_day,
            "units": float(units),
            "use_case": use_case,
        }
    reports: list[ExperimentReport] = []
    for exp_id in sorted(by_exp):
        spec = experiment_spec(exp_id, config)
        if spec is None:
            continue
        rows = by_exp[exp_id]
        variants = sorted(info.get(exp_id, {}))
        arms = [spec.control] if spec.control in variants else []
        arms += [v for v in variants if v not in arms]
        looks = sorted({r[3] for r in rows})
        first = min(v["first_day"] for v in info[exp_id].values())
        metrics = _metric_data(rows, arms, looks, {v: d["p95"] for v, d in info[exp_id].items()})
        report = analyze_experiment(
            spec,
            metrics,
            unit_counts={v: d["units"] for v, d in info[exp_id].items()},
            days_elapsed=(as_of - first).days + 1,
            as_of=as_of.isoformat(),
        )
        notes = list(report.notes)
        if exp_id not in config.get("experiments", {}):
            notes.append("not configured in experiments.toml: analysed with [defaults]")
        if crossover.get(exp_id):
            notes.append(
                f"{crossover[exp_id]} unit(s) seen in more than one variant (assignment leak)"
            )
        if notes != list(report.notes):
            from dataclasses import replace

            report = replace(report, notes=tuple(notes))
        reports.append(report)
    if store:
        store_reports(con, reports, run_id=run_id, as_of=as_of, stats_table=_STATS_TEMP)
    con.execute(f"DROP TABLE IF EXISTS {_STATS_TEMP}")
    return reports


_STATS_TEMP = "experiment_stats_current"


def store_reports(
    con: duckdb.DuckDBPyConnection,
    reports: Sequence[ExperimentReport],
    *,
    run_id: str,
    as_of: dt.date,
    stats_table: str | None = None,
) -> None:
    """Replace this run's rows for ``as_of`` with ``reports`` (one transaction).

    ``stats_table`` names a table shaped like :data:`STATS_SQL`'s result to copy into
    ``experiment_stats`` (inside DuckDB).
    """
    apply_experiments_schema(con)
    key = {"run_id": run_id, "as_of": as_of}
    con.execute("BEGIN TRANSACTION")
    try:
        for table in ("experiment_stats", "experiment_results", "experiment_decisions"):
            con.execute(f"DELETE FROM {table} WHERE run_id = $run_id AND as_of = $as_of", key)
        if stats_table:
            con.execute(
                f"INSERT INTO experiment_stats SELECT $run_id, $as_of, * FROM {stats_table}", key
            )
        result_rows = []
        for rep in reports:
            for c in rep.comparisons:
                result_rows.append(
                    (
                        run_id, as_of, rep.experiment_id, c.metric, c.role, c.variant,
                        c.control, c.kind, c.method,
                        *(_num(getattr(c, f)) for f in _RESULT_FLOATS),
                        _num(c.margin), c.margin_relative, c.verdict, c.analysable, c.message,
                        _num(c.p95_control), _num(c.p95_treatment),
                    )
                )  # fmt: skip
        if result_rows:
            placeholders = ", ".join(["?"] * len(result_rows[0]))
            con.executemany(f"INSERT INTO experiment_results VALUES ({placeholders})", result_rows)
        for rep in reports:
            d = rep.decision
            con.execute(
                "INSERT INTO experiment_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                [
                    run_id, as_of, rep.experiment_id, d.action, d.variant,
                    json.dumps(list(d.reasons)), _num(d.days_needed), _num(d.units_needed),
                    _num(rep.srm.p_value), rep.days_elapsed, json.dumps(rep.to_dict()),
                ],
            )  # fmt: skip
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


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


def report_summary(report: ExperimentReport) -> dict[str, Any]:
    """A flat, small view of a report (MLflow metrics / CLI tables)."""
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


def plot_experiment_intervals(reports: Sequence[ExperimentReport], path: Path | str) -> Path:
    """Save the experiment interval plot (PNG): relative effect and interval per arm per metric.

    One panel per experiment; a dashed line at 0 and, for guardrails, a red line at the margin
    on the harmful side (relative margins only; absolute ones are listed in the label).
    Effects are shown in percent of control so metrics of different units share an axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = max(1, len(reports))
    heights = [max(2, len(r.comparisons)) for r in reports] or [2]
    fig, axes = plt.subplots(
        panels, 1, figsize=(8, 0.45 * sum(heights) + 1.5 * panels), squeeze=False
    )
    for ax, rep in zip(axes[:, 0], reports, strict=False):
        labels: list[str] = []
        for y, c in enumerate(rep.comparisons):
            label = f"{c.metric} [{c.role}] {c.variant}"
            if c.margin is not None and not c.margin_relative:
                label += f" (margin {c.margin:g} abs)"
            labels.append(label)
            if not (c.analysable and math.isfinite(c.relative)):
                ax.text(0, y, "cannot analyse", va="center", fontsize=7, color="gray")
                continue
            lo = c.relative_ci_low if math.isfinite(c.relative_ci_low) else c.relative
            hi = c.relative_ci_high if math.isfinite(c.relative_ci_high) else c.relative
            color = {"better": "tab:green", "worse": "tab:red", "harm": "tab:red"}.get(
                c.verdict, "tab:blue"
            )
            # An always-valid (intersected) interval need not contain tonight's point estimate,
            # so the interval and the point are drawn separately, not as error bars.
            ax.hlines(y, 100 * lo, 100 * hi, color=color, lw=2)
            ax.plot([100 * lo, 100 * hi], [y, y], "|", color=color, ms=8)
            ax.plot(100 * c.relative, y, "o", color=color)
            if c.margin is not None and c.margin_relative:
                side = -1.0 if c.higher_is_better else 1.0
                ax.plot([100 * side * c.margin] * 2, [y - 0.4, y + 0.4], color="tab:red", lw=2)
        ax.axvline(0, color="black", ls="--", lw=0.8)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("effect vs control (% of control)")
        ax.set_title(f"{rep.experiment_id}: {rep.decision.label} ({rep.method})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reports_to_json(reports: Sequence[ExperimentReport]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in reports]


# ---------------------------------------------------------------------------- CSV of sums

CSV_REQUIRED = ("experiment", "metric", "kind", "variant", "n", "sum")
CSV_NUMERIC = (
    "n",
    "sum",
    "sum_squares",
    "den_sum",
    "den_sum_squares",
    "sum_products",
    "pre_sum",
    "pre_sum_squares",
    "pre_sum_products",
    "weight",
)
CSV_KINDS = ("mean", "proportion", "ratio")


class StatsFileError(ValueError):
    """A statistics CSV that cannot be used; the message names the file, row and column."""


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    import csv

    if not path.is_file():
        raise StatsFileError(f"{path}: file not found")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in CSV_REQUIRED if c not in header]
        if missing:
            raise StatsFileError(f"{path}: missing column(s) {missing}; header is {header}")
        rows: list[dict[str, Any]] = []
        for line, raw in enumerate(reader, start=2):
            row = {str(k).strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if None in raw:
                raise StatsFileError(f"{path} row {line}: more values than header columns")
            for col in ("experiment", "metric", "variant"):
                if not row.get(col):
                    raise StatsFileError(f"{path} row {line}, column {col!r}: empty")
            kind = row["kind"].lower()
            if kind not in CSV_KINDS:
                raise StatsFileError(
                    f"{path} row {line}, column 'kind': {row['kind']!r} is not one of {CSV_KINDS}"
                )
            parsed: dict[str, Any] = {"line": line, "kind": kind}
            for col in ("experiment", "metric", "variant"):
                parsed[col] = row[col]
            for col in CSV_NUMERIC:
                text = row.get(col, "")
                if text == "":
                    parsed[col] = None
                    continue
                try:
                    value = float(text)
                except ValueError:
                    raise StatsFileError(
                        f"{path} row {line}, column {col!r}: not a number: {text!r}"
                    ) from None
                if not math.isfinite(value):
                    raise StatsFileError(f"{path} row {line}, column {col!r}: not finite")
                parsed[col] = value
            direction = row.get("direction", "").lower() or "increase"
            if direction not in ("increase", "decrease"):
                raise StatsFileError(
                    f"{path} row {line}, column 'direction': use increase or decrease"
                )
            parsed["higher_is_better"] = direction == "increase"
            _check_row(path, parsed)
            rows.append(parsed)
    if not rows:
        raise StatsFileError(f"{path}: no data rows")
    return rows


def _check_row(path: Path, r: dict[str, Any]) -> None:
    where = f"{path} row {r['line']}"
    n = r["n"]
    if n is None or n < 0 or n != int(n):
        raise StatsFileError(f"{where}, column 'n': must be a whole number >= 0")
    if r["weight"] is not None and r["weight"] < 0:
        raise StatsFileError(f"{where}, column 'weight': must be >= 0")
    if r["kind"] == "proportion":
        if r["sum"] is None or not 0 <= r["sum"] <= n:
            raise StatsFileError(f"{where}, column 'sum': successes must lie in [0, n]")
        return
    needed = ["sum_squares"]
    if r["kind"] == "ratio":
        needed += ["den_sum", "den_sum_squares", "sum_products"]
    pre = [r["pre_sum"], r["pre_sum_squares"], r["pre_sum_products"]]
    if any(v is not None for v in pre):
        if r["kind"] != "mean":
            raise StatsFileError(f"{where}: pre_* (CUPED) columns are only for kind mean")
        needed += ["pre_sum", "pre_sum_squares", "pre_sum_products"]
    for col in needed:
        if r[col] is None:
            raise StatsFileError(f"{where}, column {col!r}: required for kind {r['kind']}")
    # a sum of squares below sum^2 / n is impossible (negative variance)
    pairs = [("sum", "sum_squares"), ("den_sum", "den_sum_squares"), ("pre_sum", "pre_sum_squares")]
    for total, squares in pairs:
        t, sq = r[total], r[squares]
        if n > 0 and t is not None and sq is not None and sq < t**2 / n - 1e-9 * max(1.0, abs(sq)):
            raise StatsFileError(f"{where}, column {squares!r}: smaller than {total}^2 / n")


def analyze_stats_csv(
    path: Path | str,
    *,
    method: str = "sequential",
    alpha: float = 0.05,
    correction: str = "holm",
    n_star: float = 10_000.0,
    srm_alpha: float = 0.001,
) -> list[ExperimentReport]:
    """Analyse a CSV of per-arm sufficient statistics (``llmopt stats FILE``).

    One row per arm; within an experiment and metric the first row is control. The first metric
    of each experiment is its primary metric, the others are secondary (in the correction
    family). ``pre_*`` columns on a mean metric switch on CUPED. ``weight`` gives the configured
    traffic shares for the SRM check (equal shares when absent). :class:`StatsFileError` names
    the row and column of the first problem.
    """
    from strategies.experiments import CupedStats

    path = Path(path)
    rows = _csv_rows(path)
    experiments: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        experiments.setdefault(r["experiment"], {}).setdefault(r["metric"], []).append(r)
    reports: list[ExperimentReport] = []
    for exp_id, metrics in experiments.items():
        metric_data: list[MetricData] = []
        for metric, arm_rows in metrics.items():
            kinds = {r["kind"] for r in arm_rows}
            cuped = {r["pre_sum"] is not None for r in arm_rows}
            if len(kinds) > 1 or len(cuped) > 1:
                raise StatsFileError(
                    f"{path} row {arm_rows[0]['line']}: {exp_id}/{metric} mixes kinds "
                    "(or CUPED and plain rows) across arms"
                )
            names = [r["variant"] for r in arm_rows]
            if len(set(names)) != len(names):
                dup = next(r for k, r in enumerate(arm_rows) if r["variant"] in names[:k])
                raise StatsFileError(
                    f"{path} row {dup['line']}: variant {dup['variant']!r} repeated in "
                    f"{exp_id}/{metric}"
                )
            kind = "cuped" if cuped == {True} else arm_rows[0]["kind"]
            stats: list[ArmStats] = []
            for r in arm_rows:
                if kind == "cuped":
                    stats.append(
                        CupedStats(
                            n=r["n"], sum=r["sum"], sum_squares=r["sum_squares"],
                            pre_sum=r["pre_sum"], pre_sum_squares=r["pre_sum_squares"],
                            sum_products=r["pre_sum_products"],
                        )
                    )  # fmt: skip
                    continue
                cube = np.array(
                    [[r["n"], r["sum"], r["sum_squares"] or 0.0, r["den_sum"] or 0.0,
                      r["den_sum_squares"] or 0.0, r["sum_products"] or 0.0, 1.0]]
                )  # fmt: skip
                stats.append(_stats_object(kind, cube))
            metric_data.append(
                MetricData(
                    metric=metric,
                    kind=kind,
                    arms=tuple(names),
                    stats=tuple(stats),
                    higher_is_better=arm_rows[0]["higher_is_better"],
                )
            )
        primary_rows = next(iter(metrics.values()))
        weights = [(r["variant"], r["weight"]) for r in primary_rows]
        if any(w is None for _, w in weights) and any(w is not None for _, w in weights):
            raise StatsFileError(
                f"{path} row {primary_rows[0]['line']}: give 'weight' for every arm of {exp_id} "
                "or for none"
            )
        try:
            spec = ExperimentSpec(
                experiment_id=exp_id,
                primary=metric_data[0].metric,
                control=primary_rows[0]["variant"],
                secondary=tuple(m.metric for m in metric_data[1:]),
                weights=tuple((v, float(w)) for v, w in weights if w is not None),
                method=method,
                alpha=alpha,
                srm_alpha=srm_alpha,
                correction=correction,
                n_star=n_star,
            )
        except ValueError as exc:
            raise StatsFileError(str(exc)) from exc
        reports.append(
            analyze_experiment(
                spec,
                metric_data,
                unit_counts={r["variant"]: r["n"] for r in primary_rows},
            )
        )
    return reports


__all__ = [
    "CROSSOVER_SQL",
    "CSV_KINDS",
    "EXTRAS_SQL",
    "METRICS",
    "METRIC_COLUMNS",
    "SCHEMA_FILE",
    "STATS_SQL",
    "StatsFileError",
    "analyze_experiments",
    "analyze_stats_csv",
    "apply_experiments_schema",
    "experiment_spec",
    "plot_experiment_intervals",
    "report_summary",
    "reports_to_json",
    "store_reports",
]
