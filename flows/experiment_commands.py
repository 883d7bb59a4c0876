"""``llmopt experiments analyze`` (the warehouse), ``llmopt experiments reset ID --reason``
(lift a sticky stop, audited) and ``llmopt stats FILE`` (a CSV of sums).

Both analyses print one report per experiment: the decision with its reasons, then a table per
metric and arm (effect, interval, relative lift, p-values, chance to win) in fixed-width columns
sized to their contents, so numbers never run together. ``--json`` prints the full reports.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from typing import Any

from flows.cli_support import add_json_flag, emit, guarded, iso_date


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError("alpha must lie in (0, 1)")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = _finite(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _prior_sd(text: str) -> float:
    """A positive number, or ``inf`` for a flat prior (the one place infinity means something)."""
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    return _positive(text)


def _analyze(args: argparse.Namespace) -> int:
    from tasks.core.config import load_config
    from tasks.core.settings import load_settings
    from tasks.experiments import analyze_warehouse_experiments, plot_experiment_intervals
    from tasks.warehouse.connection import open_existing

    settings = load_settings()
    config = load_config("experiments", settings)
    run_id = args.run_id or "cli-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    con = open_existing(settings)
    try:
        reports = analyze_warehouse_experiments(
            con,
            config,
            as_of=args.as_of,
            run_id=run_id,
            experiments=args.experiment or None,
            store=not args.no_store,
        )
    finally:
        con.close()
    if args.plot and reports:
        plot_experiment_intervals(reports, args.plot)
    payload = {"run_id": run_id, "experiments": [r.to_dict() for r in reports]}
    emit(payload, as_json=args.json, human=_human)
    return 0


def _reset(args: argparse.Namespace) -> int:
    from tasks.core.settings import load_settings
    from tasks.experiments import reset_stop
    from tasks.warehouse.connection import open_existing

    con = open_existing(load_settings())
    try:
        done = reset_stop(con, args.experiment_id, reason=args.reason, by=args.by)
    finally:
        con.close()
    emit(done, as_json=args.json, human=_reset_human)
    return 0


def _reset_human(done: dict[str, Any]) -> str:
    stops = ", ".join(f"{s['action']} (since {s['stopped_on']})" for s in done["reset"])
    return (
        f"{done['experiment_id']}: reset {stops} by {done['by']}: {done['reason']}; "
        f"the SRM test restarts on units first seen after {done['srm_restarts_after']}"
    )


def _stats(args: argparse.Namespace) -> int:
    from tasks.experiments import analyze_stats_csv

    reports = analyze_stats_csv(
        args.file,
        method=args.method,
        alpha=args.alpha,
        correction=args.correction,
        correction_scale=args.correction_scale,
        n_star=args.n_star,
        srm_alpha=args.srm_alpha,
        prior_mean=args.prior_mean,
        prior_sd=args.prior_sd,
        prior_scale=args.prior_scale,
    )
    emit({"experiments": [r.to_dict() for r in reports]}, as_json=args.json, human=_human)
    return 0


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return f"{value:.{digits}g}"


_COLUMNS: tuple[tuple[str, str, bool], ...] = (  # (header, key, right-aligned)
    ("metric", "metric", False),
    ("role", "role", False),
    ("arm", "variant", False),
    ("effect", "effect", True),
    ("CI low", "ci_low", True),
    ("CI high", "ci_high", True),
    ("rel %", "relative", True),
    ("p", "p_value", True),
    ("p rel", "relative_p_value", True),
    ("p adj", "p_adjusted", True),
    ("win", "chance_to_win", True),
    ("verdict", "verdict", False),
)


def _cell(c: dict[str, Any], key: str) -> str:
    if key == "relative":
        return _num(None if c[key] is None else 100 * c[key], 3)
    if key == "verdict":
        return str(c["verdict"] or c["message"])
    if key in ("p_value", "relative_p_value", "p_adjusted", "chance_to_win"):
        return _num(c.get(key), 3)
    return _num(c[key]) if key not in ("metric", "role", "variant") else str(c[key])


def format_table(header: list[str], rows: list[list[str]], right: list[bool]) -> list[str]:
    """Fixed-width columns, each as wide as its widest cell, two spaces apart (never touching).

    Args:
        header: column titles.
        rows: cells as text, one list per row.
        right: per column, right-align (numbers) or left-align (text).
    """
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        parts = [
            cell.rjust(w) if r else cell.ljust(w)
            for cell, w, r in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _human(payload: dict[str, Any]) -> str:
    lines: list[str] = []
    if payload.get("run_id"):
        lines.append(f"run {payload['run_id']}")
    if not payload["experiments"]:
        lines.append("no experiments found")
    for rep in payload["experiments"]:
        decision = rep["decision"]
        srm = rep["srm"]
        lines.append(
            f"{rep['experiment_id']}: {decision['label']}  (method {rep['method']}, alpha "
            f"{rep['alpha']}, correction {rep['correction']} on {rep['correction_scale']} p, "
            f"SRM {srm['method']} p={_num(srm['p_value'])})"
        )
        lines += [f"  - {reason}" for reason in decision["reasons"]]
        rows = [[_cell(c, key) for _, key, _ in _COLUMNS] for c in rep["comparisons"]]
        table = format_table([h for h, _, _ in _COLUMNS], rows, [r for _, _, r in _COLUMNS])
        lines += ["  " + t for t in table]
        for c in rep["comparisons"]:
            extra = c.get("extra") or {}
            if "unadjusted_effect" in extra:
                lines.append(
                    f"  CUPED {c['metric']} {c['variant']}: unadjusted effect "
                    f"{_num(extra['unadjusted_effect'])} [{_num(extra['unadjusted_ci_low'])}, "
                    f"{_num(extra['unadjusted_ci_high'])}], adjusted {_num(c['effect'])}; "
                    f"variance reduction {_num(extra.get('cuped_variance_reduction'), 3)}"
                )
        lines += [f"  note: {note}" for note in rep["notes"]]
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``experiments analyze|reset`` and ``stats`` to the CLI.

    Args:
        subparsers: the top-level ``llmopt`` subcommands.
    """
    exp = subparsers.add_parser("experiments", help="analyse A/B experiments in the warehouse")
    exp_sub = exp.add_subparsers(dest="experiments_command", metavar="ACTION", required=True)
    analyze = exp_sub.add_parser(
        "analyze", help="effects, intervals, SRM and a decision per experiment (stored per run)"
    )
    analyze.add_argument("--as-of", type=iso_date, default=None, help="last day analysed (UTC)")
    analyze.add_argument("--run-id", default=None, help="run id to store results under")
    analyze.add_argument("--experiment", action="append", help="only this experiment (repeat)")
    analyze.add_argument("--no-store", action="store_true", help="do not write result tables")
    analyze.add_argument("--plot", default=None, help="also write the interval plot PNG here")
    add_json_flag(analyze)
    analyze.set_defaults(handler=guarded(_analyze))
    reset = exp_sub.add_parser(
        "reset", help="lift a sticky stop (SRM / harm) of an experiment; recorded with the reason"
    )
    reset.add_argument("experiment_id", metavar="ID", help="the experiment to reset")
    reset.add_argument("--reason", required=True, help="why the stop no longer applies")
    reset.add_argument("--by", default=None, help="who resets (default: your login name)")
    add_json_flag(reset)
    reset.set_defaults(handler=guarded(_reset))

    stats = subparsers.add_parser(
        "stats", help="analyse a CSV of per-arm sufficient statistics (one row per arm)"
    )
    stats.add_argument("file", help="CSV: experiment,metric,kind,variant,n,sum,sum_squares,...")
    methods = ("sequential", "fixed", "bayesian")
    stats.add_argument(
        "--method", choices=methods, default="sequential", help="how effects are tested (one look)"
    )
    stats.add_argument("--alpha", type=_alpha, default=0.05, help="significance level, in (0, 1)")
    stats.add_argument(
        "--srm-alpha", type=_alpha, default=0.001, help="level of the sample-ratio check"
    )
    stats.add_argument(
        "--correction",
        choices=("none", "holm", "bh"),
        default="holm",
        help="multiple-testing correction over primary + secondary comparisons",
    )
    stats.add_argument(
        "--correction-scale",
        choices=("absolute", "relative"),
        default="absolute",
        help="which p-values are corrected and decide: absolute or relative effect",
    )
    stats.add_argument(
        "--n-star",
        type=_positive,
        default=10_000.0,
        help="sequential tuning: units per arm where the confidence sequence is tightest",
    )
    stats.add_argument("--prior-mean", type=_finite, default=0.0, help="bayesian prior mean")
    stats.add_argument(
        "--prior-sd", type=_prior_sd, default=math.inf, help="bayesian prior sd (inf: flat)"
    )
    stats.add_argument(
        "--prior-scale",
        choices=("absolute", "relative"),
        default="absolute",
        help="bayesian prior on the absolute effect or on the relative lift",
    )
    add_json_flag(stats)
    stats.set_defaults(handler=guarded(_stats))


__all__ = ["format_table", "register"]
