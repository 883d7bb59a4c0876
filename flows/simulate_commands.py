"""``llmopt simulate``: write simulated usage logs and their ground truth.

Example: ``llmopt simulate --out data/sim --days 30 --rows 300000 --format parquet --seed 7``.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from flows.cli_support import CommandError, add_json_flag, emit, guarded, user_errors


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="write simulated usage logs with a known ground truth",
        description=(
            "Simulate LLM traffic (4 use cases, 4 models, an A/B and an A/A experiment, drift, a "
            "cost spike) and write it as Parquet / JSONL / CSV plus ground_truth.json."
        ),
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: sim dir)")
    parser.add_argument("--days", type=int, default=30, help="number of days (default 30)")
    parser.add_argument(
        "--start-date", default="2026-10-01", help="first UTC day, YYYY-MM-DD (default 2026-10-01)"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--rows", type=int, default=None, help="total rows (exact)")
    size.add_argument(
        "--requests-per-day",
        type=int,
        default=None,
        help="rows per day, split over use cases by the default traffic mix",
    )
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=("parquet", "jsonl", "csv"),
        default="parquet",
        help="file format (default parquet)",
    )
    parser.add_argument("--gzip", action="store_true", help="gzip JSONL / CSV (zstd for Parquet)")
    parser.add_argument("--rows-per-file", type=int, default=None, help="split days into parts")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--no-experiments", action="store_true", help="no A/B or A/A experiment")
    parser.add_argument("--no-drift", action="store_true", help="no drift on sales-email")
    parser.add_argument("--no-cost-spike", action="store_true", help="no cost spike on code-review")
    parser.add_argument(
        "--with-cost", action="store_true", help="fill cost_usd (default: left null for pricing)"
    )
    add_json_flag(parser)
    parser.set_defaults(handler=guarded(_run))


def _human(payload: dict[str, Any]) -> str:
    lines = [
        f"wrote {payload['rows']:,} rows in {len(payload['paths'])} {payload['format']} file(s) "
        f"to {payload['out_dir']} in {payload['seconds']:.1f} s",
        f"ground truth: {payload['ground_truth_path']}",
    ]
    for uc, info in payload["use_cases"].items():
        lines.append(
            f"  {uc}: production {info['production_config_id']} "
            f"(quality {info['production_quality']:.3f}); true optimum {info['optimal_config_id']} "
            f"(quality {info['optimal_quality']:.3f})"
        )
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from tasks.core.settings import load_settings
    from tasks.simulation import (
        SimulationSpec,
        load_ground_truth,
        split_requests_per_day,
        write_simulation,
    )
    from tasks.simulation.world import USE_CASES

    try:
        start = dt.date.fromisoformat(args.start_date)
    except ValueError as exc:
        raise CommandError(f"--start-date must be YYYY-MM-DD: {exc}") from exc
    for flag in ("days", "rows", "requests_per_day", "rows_per_file"):
        value = getattr(args, flag)
        if value is not None and value < (1 if flag != "rows" else 0):
            raise CommandError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    weights = {name: uc.default_requests_per_day for name, uc in USE_CASES.items()}
    total_rows = args.rows
    if args.requests_per_day is not None:  # exactly N per day, every day
        weights = split_requests_per_day(args.requests_per_day)
    with user_errors(ValueError, TypeError):
        spec = SimulationSpec(
            seed=args.seed,
            start_date=start,
            days=args.days,
            requests_per_day=weights,
            total_rows=total_rows,
            experiments=not args.no_experiments,
            drift=not args.no_drift,
            cost_spike=not args.no_cost_spike,
            include_cost=args.with_cost,
        )
    out_dir = args.out if args.out is not None else load_settings().sim_dir
    output = write_simulation(
        spec, out_dir, fmt=args.fmt, compress=args.gzip, rows_per_file=args.rows_per_file
    )
    truth = load_ground_truth(output.ground_truth_path)
    payload = {
        "out_dir": str(output.out_dir),
        "paths": [str(p) for p in output.paths],
        "ground_truth_path": str(output.ground_truth_path),
        "rows": output.rows,
        "rows_per_day": list(output.rows_per_day),
        "format": output.fmt,
        "compressed": output.compress,
        "seconds": round(output.seconds, 3),
        "spec": spec.to_dict(),
        "use_cases": {
            name: {
                "production_config_id": t.production_config_id,
                "production_quality": t.config(t.production_config_id).true_mean_quality,
                "optimal_config_id": t.optimal.config_id,
                "optimal_quality": t.optimal.true_mean_quality,
            }
            for name, t in truth.use_cases.items()
        },
        "experiments": [e.experiment_id for e in truth.experiments],
        "drift": truth.drift is not None,
        "cost_spike": truth.cost_spike is not None,
    }
    emit(payload, as_json=args.json, human=_human)
    return 0


__all__ = ["register"]
