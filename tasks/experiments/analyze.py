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
from tasks.core.config import ConfigError
from tasks.core.errors import LlmoptError
from tasks.core.settings import REPO_ROOT
from tasks.plots.canvas import PlacedText, draw_legend, draw_texts, nice_ticks, text_width

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
daily_wide AS MATERIALIZED (  -- daily increments of the per-unit sufficient statistics:
    -- (N + dn)^2 - N^2 = 2 N dn + dn^2, likewise for den^2 and num * den; a unit counts in n
    -- from the first day its denominator is positive. Kahan sums (fsum) keep the digits.
    -- Every metric in one GROUP BY over the unit-days (wide), unpivoted once it is small.
    SELECT experiment_id, variant_id, day,
{daily_columns}
    FROM running
    GROUP BY ALL
),
daily AS (                  -- one row per experiment x variant x metric x day
{metric_selects}
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
_DAILY_STATS: tuple[str, ...] = (
    "n_new",
    "num_sum",
    "num_sum_squares",
    "den_sum",
    "den_sum_squares",
    "sum_products",
    "max_den",
)


def _daily_columns(metric: str, num: str, den: str) -> str:
    """One metric's daily increments, from today's (dn, dd) and the totals before (n, d)."""
    dn, dd = f"CAST({num} AS DOUBLE)", f"CAST({den} AS DOUBLE)"
    n, d = f"CAST(prev_{num} AS DOUBLE)", f"CAST(prev_{den} AS DOUBLE)"
    exprs = (
        f"count(*) FILTER (WHERE {d} = 0 AND {dd} > 0)",
        f"fsum({dn})",
        f"fsum(2 * {n} * {dn} + {dn} * {dn})",
        f"fsum({dd})",
        f"fsum(2 * {d} * {dd} + {dd} * {dd})",
        f"fsum({n} * {dd} + {d} * {dn} + {dn} * {dd})",
        f"max({d} + {dd})",
    )
    return ",\n".join(
        f"        {e} AS {metric}__{stat}" for e, stat in zip(exprs, _DAILY_STATS, strict=True)
    )


_NUMS_DENS = sorted({c for pair in METRIC_COLUMNS.values() for c in pair})
STATS_SQL = (
    STATS_SQL_TEMPLATE.replace(
        "{daily_columns}",
        ",\n".join(_daily_columns(m, num, den) for m, (num, den) in METRIC_COLUMNS.items()),
    )
    .replace(
        "{metric_selects}",
        "\n    UNION ALL\n".join(
            f"    SELECT experiment_id, variant_id, '{m}' AS metric, day, "
            + ", ".join(f"{m}__{stat} AS {stat}" for stat in _DAILY_STATS)
            + " FROM daily_wide"
            for m in METRIC_COLUMNS
        ),
    )
    .replace(
        "{prev_columns}",
        ", ".join(f"sum({c}) OVER before_today - {c} AS prev_{c}" for c in _NUMS_DENS),
    )
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


_PLOT_DPI = 90
_ROW_IN = 0.19  # height of one row (inches)
_LABEL_PT = 7.5
_VERDICT_COLOURS = {"better": "tab:green", "worse": "tab:red", "harm": "tab:red"}
_INTERVAL_LEGEND: tuple[tuple[str, dict[str, Any]], ...] = (
    ("better", {"color": "tab:green", "lw": 2.2}),
    ("worse / harm", {"color": "tab:red", "lw": 2.2}),
    ("other verdicts", {"color": "tab:blue", "lw": 2.2}),
    ("point estimate", {"color": "grey", "marker": "o", "ms": 5, "ls": "none"}),
    ("guardrail margin", {"color": "tab:red", "marker": "|", "ms": 9, "mew": 2.2, "ls": "none"}),
)


def _effect_limits(values: Sequence[float]) -> tuple[float, float]:
    """x range (percent) holding every value unless a few outliers would squash the rest:
    then the range stops at 3x the 90th percentile magnitude and those rows are clipped."""
    finite = [v for v in values if math.isfinite(v)] + [0.0]
    mags = sorted(abs(v) for v in finite)
    cap = max(3.0 * mags[int(0.9 * (len(mags) - 1))], 1.0)
    lo, hi = max(min(finite), -cap), min(max(finite), cap)
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


def plot_experiment_intervals(reports: Sequence[ExperimentReport], path: Path | str) -> Path:
    """Save the experiment interval plot (PNG): a forest plot, one row per comparison.

    Rows are grouped under a header per experiment (id, decision, method). Each row shows the
    relative effect in percent of control: the interval (bar with end ticks), the night's point
    estimate (dot; drawn separately since an always-valid interval need not contain it), the
    verdict (colour, and named on the right), and for guardrails with a relative margin a red
    bar at the margin on the harmful side (absolute margins are named in the label). Rows that
    cannot be analysed say so; values beyond the x range end in an arrow and are printed.
    One axes with fixed margins from the label widths, a plain ``Figure`` (no pyplot state:
    safe from several threads), text and ticks as a few collections: ~0.5 s for 50 experiments.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    # ---- rows (y = row index from the top): a header per experiment, then its comparisons
    headers: list[tuple[float, str, str]] = []  # y, text, colour
    notes: list[tuple[float, str]] = []  # y, "cannot analyse" / "no comparisons"
    rows: list[tuple[float, Any]] = []  # y, comparison
    bands: list[tuple[float, float]] = []  # first and last row of every other experiment
    y = 0.0
    for k, rep in enumerate(reports):
        top = y
        action = rep.decision.action
        colour = "tab:green" if action.startswith("ship") else "black"
        colour = "tab:red" if action.startswith("stop") else colour
        headers.append((y, f"{rep.experiment_id}: {rep.decision.label} ({rep.method})", colour))
        y += 1.0
        for c in rep.comparisons:
            rows.append((y, c))
            y += 1.0
        if not rep.comparisons:
            notes.append((y, "no comparisons"))
            y += 1.0
        if k % 2 == 0:
            bands.append((top, y - 1.0))
        y += 0.5
    n_rows = max(y - 0.5, 1.0)

    # ---- x range (percent of control), then what each row draws
    values: list[float] = []
    for _, c in rows:
        if c.analysable and math.isfinite(c.relative):
            values += [100 * c.relative, 100 * c.relative_ci_low, 100 * c.relative_ci_high]
            if c.margin is not None and c.margin_relative:
                values.append(100 * c.margin * (-1.0 if c.higher_is_better else 1.0))
    x_lo, x_hi = _effect_limits(values)

    def clip(v: float) -> float:
        return min(max(v, x_lo), x_hi)

    segments: list[list[tuple[float, float]]] = []
    seg_colours: list[str] = []
    caps: list[list[tuple[float, float]]] = []
    cap_colours: list[str] = []
    margins: list[list[tuple[float, float]]] = []
    marks: dict[str, list[tuple[float, float, str]]] = {"o": [], "<": [], ">": []}
    labels: list[tuple[float, str, str]] = []  # y, label, verdict text
    for yc, c in rows:
        label = f"{c.metric} [{c.role}] {c.variant}"
        if c.margin is not None and not c.margin_relative:
            label += f" (margin {c.margin:g} abs)"
        if not (c.analysable and math.isfinite(c.relative)):
            note = f"cannot analyse: {c.message}" if c.message else "cannot analyse"
            notes.append((yc, note[:90]))
            labels.append((yc, label, ""))
            continue
        colour = _VERDICT_COLOURS.get(c.verdict, "tab:blue")
        point = 100 * c.relative
        lo = 100 * c.relative_ci_low if not math.isnan(c.relative_ci_low) else point
        hi = 100 * c.relative_ci_high if not math.isnan(c.relative_ci_high) else point
        segments.append([(clip(lo), yc), (clip(hi), yc)])
        seg_colours.append(colour)
        clipped = False
        for end in (lo, hi):
            if x_lo < end < x_hi:
                caps.append([(end, yc - 0.28), (end, yc + 0.28)])
                cap_colours.append(colour)
            else:
                marks["<" if end <= x_lo else ">"].append((clip(end), yc, colour))
                clipped = True
        if x_lo < point < x_hi:
            marks["o"].append((point, yc, colour))
        else:
            marks["<" if point <= x_lo else ">"].append((clip(point), yc, colour))
            clipped = True
        if c.margin is not None and c.margin_relative:
            m = clip(100 * c.margin * (-1.0 if c.higher_is_better else 1.0))
            margins.append([(m, yc - 0.42), (m, yc + 0.42)])
        verdict = c.verdict or ""
        if clipped:
            verdict += f" ({point:+.3g}% [{lo:+.3g}, {hi:+.3g}])"
        labels.append((yc, label, verdict))

    # ---- layout in inches from the label widths
    label_w = max([text_width(t, _LABEL_PT) for _, t, _v in labels] + [0.6])
    verdict_w = max([text_width(v, _LABEL_PT) for _, _t, v in labels if v] + [0.6])
    header_w = max([text_width(t, 8.5, bold=True) for _, t, _c in headers] + [0.0])
    pad, gap, plot_w = 0.12, 0.1, 5.0
    fig_w = max(2 * pad + label_w + plot_w + 2 * gap + verdict_w, header_w + 2 * pad, 6.0)
    plot_w = fig_w - (2 * pad + label_w + 2 * gap + verdict_w)
    left = pad + label_w + gap
    top_in, bottom_in = 0.95, 0.55
    row_in = min(_ROW_IN, (60_000 / _PLOT_DPI - top_in - bottom_in) / n_rows)  # Agg: < 2^16 px
    rows_h = row_in * n_rows
    fig_h = top_in + bottom_in + rows_h

    def y_in(row: float) -> float:
        return bottom_in + rows_h - (row + 0.5) * row_in

    def x_in(value: float) -> float:
        return left + (value - x_lo) / (x_hi - x_lo) * plot_w

    fig = Figure(figsize=(fig_w, fig_h), dpi=_PLOT_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((left / fig_w, bottom_in / fig_h, plot_w / fig_w, rows_h / fig_h))
    ax.xaxis.set_visible(False)  # ticks drawn below: matplotlib's tick objects are costly
    ax.yaxis.set_visible(False)
    ax.patch.set_visible(False)  # let the bands show through
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(n_rows - 0.5, -0.5)
    inches = fig.dpi_scale_trans
    # every other experiment on a light band across label, plot and verdict columns
    x0, x1 = pad / 2, fig_w - pad / 2
    shaded = [
        [
            (x0, y_in(a) + row_in / 2),
            (x1, y_in(a) + row_in / 2),
            (x1, y_in(b) - row_in / 2),
            (x0, y_in(b) - row_in / 2),
        ]
        for a, b in bands
    ]
    fig.add_artist(
        PolyCollection(shaded, facecolors="0.95", edgecolors="none", transform=inches, zorder=-1)
    )

    x_ticks, x_labels = nice_ticks(x_lo, x_hi, 9)
    ax.add_collection(
        LineCollection(
            [[(x, -0.5), (x, n_rows - 0.5)] for x in x_ticks],
            colors="0.88",
            linewidths=0.6,
            zorder=0.5,
        )
    )
    ax.axvline(0, color="black", ls="--", lw=0.8)
    tick = 3 / 72
    tick_marks = [[(x_in(x), bottom_in), (x_in(x), bottom_in - tick)] for x in x_ticks]
    tick_marks += [
        [(x_in(x), bottom_in + rows_h), (x_in(x), bottom_in + rows_h + tick)] for x in x_ticks
    ]
    fig.add_artist(LineCollection(tick_marks, colors="black", linewidths=0.8, transform=inches))

    ax.add_collection(LineCollection(segments, colors=seg_colours, linewidths=2.2, zorder=2))
    ax.add_collection(LineCollection(caps, colors=cap_colours, linewidths=1.2, zorder=2))
    ax.add_collection(LineCollection(margins, colors="tab:red", linewidths=2.2, zorder=2.5))
    for marker, pts in marks.items():
        if pts:
            ax.scatter(
                [p[0] for p in pts],
                [p[1] for p in pts],
                c=[p[2] for p in pts],
                marker=marker,
                s=22 if marker == "o" else 30,
                zorder=3,
                clip_on=False,
                edgecolors="white" if marker == "o" else "face",
                linewidths=0.5,
            )

    texts: list[PlacedText] = []
    for x, text in zip(x_ticks, x_labels, strict=True):
        texts.append((text, (x_in(x), bottom_in - 5 / 72), 8.0, "center", "top", "black", False))
        texts.append(
            (
                text,
                (x_in(x), bottom_in + rows_h + 5 / 72),
                8.0,
                "center",
                "baseline",
                "black",
                False,
            )
        )
    texts.append(
        (
            "effect vs control (% of control)",
            (left + plot_w / 2, bottom_in - 0.27),
            9.0,
            "center",
            "top",
            "black",
            False,
        )
    )
    for yc, label, verdict in labels:
        texts.append((label, (left - gap, y_in(yc)), _LABEL_PT, "right", "center", "black", False))
        if verdict:
            colour = _VERDICT_COLOURS.get(verdict.split(" (")[0], "tab:blue")
            texts.append(
                (
                    verdict,
                    (left + plot_w + gap, y_in(yc)),
                    _LABEL_PT,
                    "left",
                    "center",
                    colour,
                    False,
                )
            )
    for yc, text, colour in headers:
        texts.append((text, (pad, y_in(yc)), 8.5, "left", "center", colour, True))
    for yc, text in notes:
        texts.append((text, (left + 0.05, y_in(yc)), _LABEL_PT, "left", "center", "dimgrey", False))
    if not reports:
        texts.append(
            (
                "no experiments",
                (left + plot_w / 2, y_in(0)),
                9.0,
                "center",
                "center",
                "black",
                False,
            )
        )
    as_of = max((r.as_of or "" for r in reports), default="")
    title = (
        f"Experiments{' to ' + as_of if as_of else ''}: relative effect vs control per comparison"
    )
    texts.append((title, (pad, fig_h - 0.1), 10.0, "left", "top", "black", True))
    draw_legend(fig, texts, (pad, fig_h - 0.38), _INTERVAL_LEGEND)
    draw_texts(fig, texts)
    fig.savefig(path, dpi=_PLOT_DPI)
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


class StatsFileError(LlmoptError, ValueError):
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
