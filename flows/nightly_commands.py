"""``llmopt nightly run|serve|approve`` and ``llmopt demo``: the nightly flow from the command line.

Expected failures (an empty warehouse, an unknown use case, a lock held by a running night) are
one line on stderr with a hint and exit 1; the flow's own logs keep the details.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
from typing import Any

from flows.cli_support import CommandError, add_json_flag, emit, guarded
from tasks.core.errors import LlmoptError

STRATEGIES = ("experiments", "search", "frontier", "budget", "bandits", "monitoring")


def _with_hint(exc: LlmoptError) -> str:
    """The error's message, plus what to do for the failures a new site meets first."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "no usage logs" in text and "hint" not in text:
        return text + " (hint: put log files in <LLMOPT_HOME>/data/incoming and pass --input)"
    if "for use case" in text:
        return text + " (hint: `llmopt status` lists the use cases in the warehouse)"
    return text


def _prefect_defaults() -> None:
    # A temporary local Prefect server starts when no PREFECT_API_URL is set; give it time.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")


def _precheck(args: argparse.Namespace) -> None:
    """Refuse at once (before any Prefect server starts) when the night cannot run: nothing to
    ingest and an empty warehouse, or a use case the warehouse has never seen."""
    import duckdb

    from tasks.core.settings import load_settings

    settings = load_settings()
    if args.input:
        from tasks.nightly.ingest_step import resolve_inputs

        resolve_inputs(settings, args.input)  # a named file that does not exist: one line now
        return  # tonight's ingest decides; the flow reports what it found
    hint = (
        "hint: put log files in <LLMOPT_HOME>/data/incoming and run "
        "`llmopt nightly run --input data/incoming`, or `llmopt ingest PATH` first"
    )
    if not settings.warehouse_path.exists():
        raise CommandError(f"no warehouse at {settings.warehouse_path} yet ({hint})")
    try:
        con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    except duckdb.Error:
        return  # busy (a night or an ingest is writing): the flow's own lock handles it
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        known = (
            [r[0] for r in con.execute("SELECT DISTINCT use_case FROM usage_logs").fetchall()]
            if "usage_logs" in tables
            else []
        )
    finally:
        con.close()
    if not known:
        raise CommandError(f"the warehouse {settings.warehouse_path} has no usage logs ({hint})")
    unknown = sorted(set(args.use_case or []) - set(known))
    if unknown:
        raise CommandError(
            f"unknown use case(s) {', '.join(unknown)}: the warehouse has "
            f"{', '.join(sorted(known))} (hint: check the spelling, or ingest its logs)"
        )


class _NoExpectedTracebacks(logging.Filter):
    """Drop the traceback (not the line) of an expected error from Prefect's console logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], LlmoptError):
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_expected_tracebacks() -> None:
    """Prefect logs a flow's exception with its traceback; for an :class:`LlmoptError` the
    CLI's one line (and the run's logs in the UI, which keep it) are enough."""
    names = ["", *(n for n in logging.Logger.manager.loggerDict if n.startswith("prefect"))]
    for name in names:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _NoExpectedTracebacks) for f in handler.filters):
                handler.addFilter(_NoExpectedTracebacks())


def _run(args: argparse.Namespace) -> int:
    _precheck(args)
    _prefect_defaults()
    from flows.nightly import NightlyParameters, StrategySwitches, nightly_optimization

    _quiet_expected_tracebacks()

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
    except LlmoptError as exc:  # expected: one line (the flow's logs keep the details)
        raise CommandError(_with_hint(exc)) from exc
    except Exception as exc:  # the flow already logged the traceback
        raise CommandError(f"the nightly run failed: {type(exc).__name__}: {exc}") from exc
    emit(summary, as_json=args.json, human=_human_summary)
    return 1 if summary.get("failures") else 0


def _serve(args: argparse.Namespace) -> int:
    _prefect_defaults()
    if not os.environ.get("PREFECT_API_URL"):
        raise CommandError(
            "nightly serve needs a Prefect server for its schedule: start `prefect server "
            "start` and set PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    from flows.nightly import (
        NIGHTLY_CRON,
        SERVE_DEPLOYMENT_NAME,
        deployment_parameters,
        nightly_optimization,
    )

    parameters = deployment_parameters()
    if args.approval is not None:
        parameters["params"]["approval"] = args.approval
    nightly_optimization.serve(
        name=args.name or SERVE_DEPLOYMENT_NAME,
        cron=args.cron or NIGHTLY_CRON,
        parameters=parameters,
        tags=["llm-auto-optimizer", "nightly"],
        global_limit=1,
    )
    return 0


def _wait_until_paused(run_id: Any, seconds: float) -> None:
    """Poll the flow run until it waits for input (or ``seconds`` pass); progress on stderr."""
    import sys
    import time

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(run_id).state
            if state is not None and (state.is_paused() or state.is_final()):
                return
            if time.monotonic() >= deadline:
                return
            name = state.name if state is not None else "unknown"
            print(f"waiting for flow run {run_id} to ask (state {name})", file=sys.stderr)
            time.sleep(min(5.0, max(deadline - time.monotonic(), 0.1)))


def _approve(args: argparse.Namespace) -> int:
    """Answer a paused nightly run's approval form (the same input the Prefect UI sends)."""
    _prefect_defaults()
    if not os.environ.get("PREFECT_API_URL"):
        raise CommandError("set PREFECT_API_URL to the Prefect server of the paused run")
    from uuid import UUID

    from prefect.exceptions import NotPausedError, ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    try:
        run_id = UUID(args.flow_run_id)
    except ValueError as exc:
        raise CommandError(f"not a flow run id: {args.flow_run_id!r}") from exc
    _wait_until_paused(run_id, args.wait)
    answer = {
        "decision": "reject" if args.reject else "approve",
        "approver": args.by,
        "reason": args.reason or "",
    }
    try:
        resume_flow_run(run_id, run_input=answer)
    except NotPausedError as exc:
        raise CommandError(
            f"flow run {run_id} is not waiting for approval (see `prefect flow-run ls`)"
        ) from exc
    except ObjectNotFound as exc:
        raise CommandError(f"no flow run {run_id} on {os.environ['PREFECT_API_URL']}") from exc
    print(f"{answer['decision']}d flow run {run_id} as {args.by}")
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
    experiments = summary.get("experiments") or {}
    if experiments:
        lines.append("experiments:")
        lines += [f"  {exp}: {decision}" for exp, decision in experiments.items()]
    lines.append("use cases:")
    for use_case, item in summary.get("use_cases", {}).items():
        lines.append(f"  {use_case}: {item.get('headline', '')}")
        published = item.get("published") or {}
        if published.get("message"):  # a rejection: who, and what keeps serving
            lines.append(f"    {published['message']}")
        elif published.get("status"):
            version = f" v{published['version']}" if published.get("version") else ""
            lines.append(f"    registry: {published['status']}{version}")
        lines += [f"    ALERT {line}" for line in item.get("alerts", [])]
    for use_case, error in summary.get("failures", {}).items():
        lines.append(f"  {use_case}: FAILED {error}")
    from tasks.nightly.report import loop_lines  # lazy: `llmopt --help` stays fast

    loop = loop_lines(summary)
    if loop:
        lines += ["the loop (objective, evidence, what was proposed and why):"]
        lines += [f"  {line}" for line in loop]
    if summary.get("mlflow_parent_run_id"):
        lines.append(f"MLflow parent run: {summary['mlflow_parent_run_id']}")
    return "\n".join(lines)


def _human_demo(result: dict[str, Any]) -> str:
    return "\n".join(str(line) for line in result.get("report_lines", []))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    nightly = subparsers.add_parser("nightly", help="run or serve the nightly optimization flow")
    actions = nightly.add_subparsers(dest="nightly_command", metavar="ACTION", required=True)

    run = actions.add_parser("run", help="run one night now (a temporary Prefect server if none)")
    run.add_argument(
        "--as-of",
        type=dt.date.fromisoformat,
        help="night to analyse (YYYY-MM-DD; default: the latest day in the warehouse)",
    )
    run.add_argument(
        "--lookback-days", type=int, default=14, help="window for frontier and bandits (days)"
    )
    run.add_argument("--use-case", action="append", help="restrict to a use case (repeatable)")
    run.add_argument(
        "--input",
        action="append",
        help="file, folder or glob of new logs (repeatable); a glob matching nothing is "
        "'nothing new tonight', e.g. --input data/incoming",
    )
    run.add_argument("--dry-run", action="store_true", help="analyse and report; publish nothing")
    run.add_argument(
        "--approval",
        choices=["policy", "auto", "human"],
        default="policy",
        help="policy: each use case's registry policy; auto: publish when guardrails pass; "
        "human: leave new configurations for `llmopt registry approve`",
    )
    run.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=STRATEGIES,
        help="switch a strategy off (repeatable)",
    )
    run.add_argument("--wait", type=float, default=0.0, help="seconds to wait for a running night")
    add_json_flag(run)
    run.set_defaults(handler=guarded(_run))

    serve = actions.add_parser(
        "serve",
        help="serve the flow on a cron schedule in this process (the same parameters as "
        "deployments/prefect.yaml; needs PREFECT_API_URL)",
    )
    serve.add_argument("--name", default=None, help="deployment name (default: nightly-serve)")
    serve.add_argument("--cron", default=None, help="cron schedule in UTC (default: 15 2 * * *)")
    serve.add_argument(
        "--approval",
        choices=["policy", "auto", "human"],
        default=None,
        help="override the deployment's approval mode (default: policy)",
    )
    serve.set_defaults(handler=guarded(_serve))

    approve = actions.add_parser(
        "approve", help="answer a paused nightly run's approval form (as the Prefect UI does)"
    )
    approve.add_argument("flow_run_id", help="the paused flow run's id (prefect flow-run ls)")
    approve.add_argument("--by", required=True, help="your name: recorded in the registry audit")
    approve.add_argument("--reason", default="", help="why: recorded in the registry audit")
    approve.add_argument(
        "--reject", action="store_true", help="reject (production keeps serving) instead"
    )
    approve.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds to wait for the run to reach its approval step (default: answer now)",
    )
    approve.set_defaults(handler=guarded(_approve))
    _register_demo(subparsers)


def _register_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo", help="simulate a month of traffic and run the nightly flow over its last nights"
    )
    demo.add_argument("--days", type=int, default=30, help="simulated days")
    demo.add_argument("--nights", type=int, default=10, help="nightly runs over the last N days")
    demo.add_argument(
        "--rows-per-day", type=int, default=None, help="requests per day, all use cases"
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulated world")
    add_json_flag(demo)
    demo.set_defaults(handler=guarded(_demo))


__all__ = ["register"]
