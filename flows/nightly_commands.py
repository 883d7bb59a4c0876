"""``llmopt nightly run|serve`` and ``llmopt demo``: the nightly flow from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from typing import Any

from flows.cli_support import CommandError, add_json_flag, emit, guarded


def _prefect_defaults() -> None:
    # A temporary local Prefect server starts when no PREFECT_API_URL is set; give it time.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")


def _run(args: argparse.Namespace) -> int:
    _prefect_defaults()
    from flows.nightly import NightlyParameters, StrategySwitches, nightly_optimization

    switches = StrategySwitches(**{name: False for name in args.skip})
    params = NightlyParameters(
        as_of=args.as_of,
        lookback_days=args.lookback_days,
        use_cases=args.use_case or [],
        input_paths=args.input or [],
        dry_run=args.dry_run,
        strategies=switches,
        approval=args.approval,
        lock_wait_seconds=args.wait,
    )
    try:
        summary = nightly_optimization(params=params)
    except Exception as exc:  # the flow already logged the details
        raise CommandError(str(exc)) from exc
    emit(summary, as_json=args.json, human=_human_summary)
    return 1 if summary.get("failures") else 0


def _serve(args: argparse.Namespace) -> int:
    _prefect_defaults()
    from flows.nightly import NightlyParameters, nightly_optimization

    nightly_optimization.serve(
        name=args.name,
        cron=args.cron,
        parameters={"params": NightlyParameters(approval=args.approval).model_dump(mode="json")},
        tags=["llm-auto-optimizer", "nightly"],
        global_limit=1,
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    _prefect_defaults()
    from flows.demo import run_demo

    result = run_demo(
        days=args.days, nights=args.nights, rows_per_day=args.rows_per_day, seed=args.seed
    )
    emit(result, as_json=args.json, human=_human_demo)
    return 1 if result.get("failures") else 0


def _human_summary(summary: dict[str, Any]) -> str:
    lines = [f"night {summary.get('as_of')}  run {summary.get('run_key')}"]
    for use_case, item in summary.get("use_cases", {}).items():
        lines.append(f"  {use_case}: {item.get('headline', '')}")
    for use_case, error in summary.get("failures", {}).items():
        lines.append(f"  {use_case}: FAILED {error}")
    if summary.get("mlflow_parent_run_id"):
        lines.append(f"MLflow parent run: {summary['mlflow_parent_run_id']}")
    return "\n".join(lines)


def _human_demo(result: dict[str, Any]) -> str:
    return "\n".join(str(line) for line in result.get("report_lines", []))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    nightly = subparsers.add_parser("nightly", help="run or serve the nightly optimization flow")
    actions = nightly.add_subparsers(dest="nightly_command", metavar="ACTION", required=True)

    run = actions.add_parser("run", help="run one night now (a temporary Prefect server if none)")
    run.add_argument("--as-of", type=dt.date.fromisoformat, help="night to analyse (YYYY-MM-DD)")
    run.add_argument("--lookback-days", type=int, default=14)
    run.add_argument("--use-case", action="append", help="restrict to a use case (repeatable)")
    run.add_argument("--input", action="append", help="file or glob of new logs (repeatable)")
    run.add_argument("--dry-run", action="store_true", help="analyse and report; publish nothing")
    run.add_argument("--approval", choices=["policy", "auto", "human"], default="policy")
    run.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["experiments", "search", "frontier", "budget", "bandits", "monitoring"],
        help="switch a strategy off (repeatable)",
    )
    run.add_argument("--wait", type=float, default=0.0, help="seconds to wait for a running night")
    add_json_flag(run)
    run.set_defaults(handler=guarded(_run))

    serve = actions.add_parser("serve", help="serve the flow on a cron schedule (one process)")
    serve.add_argument("--name", default="nightly")
    serve.add_argument("--cron", default="15 2 * * *")
    serve.add_argument("--approval", choices=["policy", "auto", "human"], default="policy")
    serve.set_defaults(handler=guarded(_serve))

    demo = subparsers.add_parser(
        "demo", help="simulate a month of traffic and run the nightly flow over its last nights"
    )
    demo.add_argument("--days", type=int, default=30, help="simulated days")
    demo.add_argument("--nights", type=int, default=10, help="nightly runs over the last N days")
    demo.add_argument(
        "--rows-per-day", type=int, default=None, help="requests per day, all use cases"
    )
    demo.add_argument("--seed", type=int, default=7)
    add_json_flag(demo)
    demo.set_defaults(handler=guarded(_demo))


__all__ = ["register"]
