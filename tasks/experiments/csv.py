"""``llmopt stats FILE``: a CSV of per-arm sufficient statistics from anywhere, analysed once.

One row per arm; within an experiment and metric the first row is control. The first metric of
each experiment is its primary metric, the others are secondary (in the correction family).
``pre_*`` columns on a mean metric switch on CUPED; ``weight`` gives the configured traffic
shares for the SRM check (equal shares when absent). A CSV is one look, so every method decides
(the nightly rules of :mod:`strategies.experiments.nightly` are for the warehouse). Any problem
is a :class:`StatsFileError` naming the file, row and column.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from strategies.experiments import (
    ArmStats,
    CupedStats,
    ExperimentReport,
    ExperimentSpec,
    MeanStats,
    MetricData,
    ProportionStats,
    RatioStats,
    analyze_experiment,
)
from tasks.core.errors import LlmoptError

__all__ = ["CSV_KINDS", "StatsFileError", "analyze_stats_csv", "stats_object"]

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


def stats_object(kind: str, rows: np.ndarray) -> ArmStats:
    """Statistics of one arm over looks from SQL-shaped rows.

    Args:
        kind: ``mean``, ``proportion`` or ``ratio``.
        rows: (looks, 7) array of n, num_sum, num_ss, den_sum, den_ss, products, max_den.
    """
    n, s, ss, ds, dss, sp = (rows[:, i] for i in range(6))
    if kind == "mean":
        return MeanStats(n=n, sum=s, sum_squares=ss)
    if kind == "proportion":
        return ProportionStats(n=n, successes=s)
    return RatioStats(
        n=n, num_sum=s, num_sum_squares=ss, den_sum=ds, den_sum_squares=dss, sum_products=sp
    )


def _read_text(path: Path) -> str:
    """The file as text; a clear error for a missing file or bytes that are not UTF-8."""
    if not path.is_file():
        raise StatsFileError(f"{path}: file not found")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StatsFileError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None


def _parse_row(path: Path, line: int, raw: dict[Any, Any]) -> dict[str, Any]:
    """One data row: names, kind, numbers (None when empty), direction; checked."""
    if None in raw:
        raise StatsFileError(f"{path} row {line}: more values than header columns")
    row = {str(k).strip(): (v or "").strip() for k, v in raw.items()}
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
        raise StatsFileError(f"{path} row {line}, column 'direction': use increase or decrease")
    parsed["higher_is_better"] = direction == "increase"
    _check_row(path, parsed)
    return parsed


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise StatsFileError(f"{path}: missing column(s) {missing}; header is {header}")
    rows = [_parse_row(path, line, raw) for line, raw in enumerate(reader, start=2)]
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


def _metric(path: Path, exp_id: str, metric: str, arm_rows: list[dict[str, Any]]) -> MetricData:
    """One metric of one experiment from its arm rows (control first)."""
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
            f"{path} row {dup['line']}: variant {dup['variant']!r} repeated in {exp_id}/{metric}"
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
        stats.append(stats_object(kind, cube))
    return MetricData(
        metric=metric,
        kind=kind,
        arms=tuple(names),
        stats=tuple(stats),
        higher_is_better=arm_rows[0]["higher_is_better"],
    )


def analyze_stats_csv(
    path: Path | str,
    *,
    method: str = "sequential",
    alpha: float = 0.05,
    correction: str = "holm",
    correction_scale: str = "absolute",
    n_star: float = 10_000.0,
    srm_alpha: float = 0.001,
    prior_mean: float = 0.0,
    prior_sd: float = float("inf"),
    prior_scale: str = "absolute",
) -> list[ExperimentReport]:
    """Analyse a CSV of per-arm sufficient statistics (``llmopt stats FILE``), one look.

    Args:
        path: the CSV file (UTF-8).
        method: ``sequential``, ``fixed`` or ``bayesian``.
        alpha: significance level, in (0, 1).
        correction: ``none``, ``holm`` or ``bh`` over primary + secondary comparisons.
        correction_scale: ``absolute`` or ``relative``: the p-values corrected and deciding.
        n_star: sequential tuning (finite, > 0).
        srm_alpha: level of the sample-ratio check.
        prior_mean: Bayesian prior mean (on ``prior_scale``).
        prior_sd: Bayesian prior standard deviation (inf: flat).
        prior_scale: ``absolute`` or ``relative``: the scale of the Bayesian prior.

    Returns:
        One report per experiment, in file order.

    Raises:
        StatsFileError: the file or an option cannot be used (names the row and column).
    """
    path = Path(path)
    experiments: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in _csv_rows(path):
        experiments.setdefault(r["experiment"], {}).setdefault(r["metric"], []).append(r)
    reports: list[ExperimentReport] = []
    for exp_id, metrics in experiments.items():
        data = [_metric(path, exp_id, m, rows) for m, rows in metrics.items()]
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
                primary=data[0].metric,
                control=primary_rows[0]["variant"],
                secondary=tuple(m.metric for m in data[1:]),
                weights=tuple((v, float(w)) for v, w in weights if w is not None),
                method=method, alpha=alpha, srm_alpha=srm_alpha, correction=correction,
                correction_scale=correction_scale, n_star=n_star, prior_mean=prior_mean,
                prior_sd=prior_sd, prior_scale=prior_scale,
            )  # fmt: skip
        except ValueError as exc:
            raise StatsFileError(str(exc)) from exc
        counts = {r["variant"]: r["n"] for r in primary_rows}
        reports.append(analyze_experiment(spec, data, unit_counts=counts))
    return reports
