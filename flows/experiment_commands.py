"""``llmopt experiments analyze`` (the warehouse) and ``llmopt stats FILE`` (a CSV of sums).

Both print one report per experiment: the decision with its reasons, then per metric and arm the
effect, interval, p-value (adjusted), chance to win. ``--json`` prints the full reports.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from typing import Any

from flows.cli_support import CommandError, add_json_flag, emit, guarded


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError("alpha must lie in (0, 1)")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _analyze(args: argparse.Namespace) -> int:
    from tasks.core.config import ConfigError, load_config
    from tasks.core.settings import load_settings
    from tasks.experiments.analyze import analyze_experiments, plot_experiment_intervals
    from tasks.warehouse.connection import connect

    settings = load_settings()
    try:
        config = load_config("experiments", settings)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    if not settings.warehouse_path.exists():
        raise CommandError(f"no warehouse at {settings.warehouse_path}; ingest logs first")
    run_id = args.run_id or "cli-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    con = connect(settings)
    try:
        reports = analyze_experiments(
            con,
            config,
            as_of=args.as_of,
            run_id=run_id,
            experiments=args.experiment or None,
            store=not args.no_store,
        )
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        con.close()
    if args.plot and reports:
        plot_experiment_intervals(reports, args.plot)
    payload = {"run_id": run_id, "experiments": [r.to_dict() for r in reports]}
    emit(payload, as_json=args.json, human=_human)
    return 0


def _stats(args: argparse.Namespace) -> int:
    from tasks.experiments.analyze import StatsFileError, analyze_stats_csv

    try:
        reports = analyze_stats_csv(
            args.file,
            method=args.method,
            alpha=args.alpha,
            correction=args.correction,
            n_star=args.n_star,
            srm_alpha=args.srm_alpha,
        )
    except StatsFileError as exc:
        raise CommandError(str(exc)) from exc
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


def _human(payload: dict[str, Any]) -> str:
    lines: list[str] = []
    if payload.get("run_id"):
        lines.append(f"run {payload['run_id']}")
    if not payload["experiments"]:
        lines.append("no experiments found")
    for rep in payload["experiments"]:
        decision = rep["decision"]
        lines.append(
            f"{rep['experiment_id']}: {decision['label']}  "
            f"(method {rep['method']}, alpha {rep['alpha']}, SRM p={_num(rep['srm']['p_value'])})"
        )
        for reason in decision["reasons"]:
            lines.append(f"  - {reason}")
        lines.append(
            f"  {'metric':<20}{'role':<10}{'arm':<12}{'effect':>10}{'CI low':>10}{'CI high':>10}"
            f"{'rel %':>8}{'p adj':>9}{'win':>7}  verdict"
        )
        for c in rep["comparisons"]:
            rel = None if c["relative"] is None else 100 * c["relative"]
            lines.append(
                f"  {c['metric']:<20}{c['role']:<10}{c['variant']:<12}{_num(c['effect']):>10}"
                f"{_num(c['ci_low']):>10}{_num(c['ci_high']):>10}{_num(rel, 3):>8}"
                f"{_num(c['p_adjusted'], 3):>9}{_num(c['chance_to_win'], 3):>7}  "
                f"{c['verdict'] or c['message']}"
            )
        for note in rep["notes"]:
            lines.append(f"  note: {note}")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    exp = subparsers.add_parser("experiments", help="analyse A/B experiments in the warehouse")
    exp_sub = exp.add_subparsers(dest="experiments_command", metavar="ACTION", required=True)
    analyze = exp_sub.add_parser(
        "analyze", help="effects, intervals, SRM and a decision per experiment (stored per run)"
    )
    analyze.add_argument("--as-of", type=_date, default=None, help="last day analysed (UTC)")
    analyze.add_argument("--run-id", default=None, help="run id to store results under")
    analyze.add_argument("--experiment", action="append", help="only this experiment (repeat)")
    analyze.add_argument("--no-store", action="store_true", help="do not write result tables")
    analyze.add_argument("--plot", default=None, help="also write the interval plot PNG here")
    add_json_flag(analyze)
    analyze.set_defaults(handler=guarded(_analyze))

    stats = subparsers.add_parser(
        "stats", help="analyse a CSV of per-arm sufficient statistics (one row per arm)"
    )
    stats.add_argument("file", help="CSV: experiment,metric,kind,variant,n,sum,sum_squares,...")
    methods = ("sequential", "fixed", "bayesian")
    stats.add_argument("--method", choices=methods, default="sequential")
    stats.add_argument("--alpha", type=_alpha, default=0.05)
    stats.add_argument("--srm-alpha", type=_alpha, default=0.001)
    stats.add_argument("--correction", choices=("none", "holm", "bh"), default="holm")
    stats.add_argument(
        "--n-star",
        type=_positive,
        default=10_000.0,
        help="sequential tuning: units per arm where the confidence sequence is tightest",
    )
    add_json_flag(stats)
    stats.set_defaults(handler=guarded(_stats))


__all__ = ["register"]
