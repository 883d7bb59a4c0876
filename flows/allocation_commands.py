"""``llmopt budget``, ``llmopt bandit`` and ``llmopt offpolicy``: spend, traffic weights, OPE.

Handlers import DuckDB and the task modules lazily so ``llmopt --help`` stays fast. Every
command reads the warehouse (``LLMOPT_WAREHOUSE``) and ``data/config/budget.toml``
(``LLMOPT_CONFIG_DIR``); ``--as-of`` defaults to the last day with logged calls.
"""

from __future__ import annotations

import argparse
import datetime as dt
from contextlib import closing
from typing import Any

from flows.cli_support import CommandError, add_json_flag, emit, guarded, iso_date, user_errors

__all__ = ["register"]


def _open(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dt.date]:
    """(connection, budget config, as_of) or a clear CommandError."""
    from tasks.core.config import ConfigError, load_config
    from tasks.core.settings import load_settings
    from tasks.warehouse.connection import open_existing
    from tasks.warehouse.queries import latest_day

    settings = load_settings()
    import duckdb

    try:
        con = open_existing(settings, read_only=True)
    except duckdb.Error as exc:
        raise CommandError(f"cannot open {settings.warehouse_path}: {exc}") from exc
    try:
        config = load_config("budget", settings)
    except ConfigError:
        con.close()
        raise
    as_of = getattr(args, "as_of", None) or latest_day(con)
    if as_of is None:
        con.close()
        raise CommandError(f"the warehouse {settings.warehouse_path} has no usage logs yet")
    return con, config, as_of


def _use_cases(con: Any, requested: str | None, as_of: dt.date, days: int) -> list[str]:
    if requested:
        return [requested]
    rows = con.execute(
        "SELECT DISTINCT use_case FROM usage_logs WHERE day BETWEEN ? AND ? ORDER BY 1",
        [as_of - dt.timedelta(days=days - 1), as_of],
    ).fetchall()
    return [r[0] for r in rows]


# ---------------------------------------------------------------------------------- budget


def _budget_human(payload: dict[str, Any]) -> str:
    lines = [f"Budget as of {payload['as_of']}"]
    for r in payload["reports"]:
        f = r.forecast
        budget = "-" if r.budget_usd is None else f"{r.budget_usd:,.2f}"
        if f is None:
            lines.append(f"  {r.use_case:<20} {r.status:<11} {r.reasons[0]}")
            continue
        lines.append(
            f"  {r.use_case:<20} {r.status:<11} MTD {r.month_to_date_usd:>10,.2f}  "
            f"forecast {f.forecast_total:>10,.2f} [{f.lower:,.2f}, {f.upper:,.2f}]  "
            f"budget {budget}"
        )
    for m in payload["traffic_mix"]:
        if m.mix is None:
            lines.append(f"  mix {m.use_case}: cannot analyse ({'; '.join(m.reasons)})")
            continue
        shares = ", ".join(f"{k} {v:.1%}" for k, v in m.mix.weights.items() if v > 5e-4)
        lines.append(f"  mix {m.use_case} [{m.mix.status}]: {shares}")
        lines.append(f"      {m.mix.reason}")
    return "\n".join(lines)


def _budget(args: argparse.Namespace) -> int:
    from tasks.allocation.budget import (
        budget_report,
        candidates_from_frontier,
        use_case_traffic_mix,
    )

    con, config, as_of = _open(args)
    with closing(con), user_errors():  # a malformed budget.toml value
        use_cases = [args.use_case] if args.use_case else None
        reports = budget_report(con, as_of=as_of, config=config, use_cases=use_cases)
        mixes = []
        if not args.no_mix:
            window = int(config.get("bandit", {}).get("window_days", 14))
            for report in reports:
                candidates = None
                if args.frontier:
                    from tasks.search.frontier import compute_frontier

                    frontier = compute_frontier(
                        con,
                        use_case=report.use_case,
                        start=as_of - dt.timedelta(days=window - 1),
                        end=as_of,
                    )
                    candidates = candidates_from_frontier(frontier.points) or None
                mixes.append(
                    use_case_traffic_mix(
                        con,
                        use_case=report.use_case,
                        as_of=as_of,
                        config=config,
                        window_days=window,
                        report=report,
                        candidates=candidates,
                    )
                )
    payload = {"as_of": as_of, "reports": reports, "traffic_mix": mixes}
    emit(payload, as_json=args.json, human=_budget_human)
    return 0


# ---------------------------------------------------------------------------------- bandit


def _bandit_human(payload: dict[str, Any]) -> str:
    lines = [f"Bandit allocation as of {payload['as_of']}"]
    for a in payload["allocations"]:
        lines.append(f"  {a.use_case} [{a.status}] {'; '.join(a.reasons)}")
        for arm in a.arms:
            lines.append(
                f"    {arm.weight:6.1%}  P(best) {arm.probability_best:6.1%}  n={arm.n:<7} "
                f"{arm.config_id}"
            )
    for r in payload["contextual"]:
        lines.append(f"  {r['use_case']} routing [{r['status']}] on {r.get('context') or '-'}")
        lines.extend(f"    {why}" for why in r["reasons"])
        table = r.get("table") or {}
        for value, row in [*table.get("rows", {}).items(), ("* (default)", table.get("default"))]:
            if row:
                mix = ", ".join(f"{arm} {w:.1%}" for arm, w in row.items())
                lines.append(f"    {value}: {mix}")
    for c in payload.get("linucb", []):
        lines.append(f"  {c.use_case} LinUCB [{c.status}] {'; '.join(c.reasons)}")
        for cell in c.cells:
            ctx = ", ".join(f"{k}={v}" for k, v in cell.cell.items())
            lines.append(f"    {ctx}: {cell.chosen}")
    return "\n".join(lines)


def _objective_for(use_case: str) -> Any:
    """The use case's objective from ``nightly.toml`` (the balanced preset without one)."""
    from strategies.objective import objective_from_config
    from tasks.core.config import ConfigNotFoundError, load_config

    try:
        section = load_config("nightly").get("objective")
    except ConfigNotFoundError:  # a malformed file is an error, not the default objective
        section = None
    try:
        return objective_from_config(section, use_case)
    except ValueError as exc:
        raise CommandError(f"nightly.toml [objective]: {exc}") from exc


def _routing_entry(con: Any, use_case: str, as_of: dt.date, args: Any, config: Any) -> Any:
    """One use case's contextual routing as a plain dict (``table`` is a routing table)."""
    from tasks.allocation.routing import CannotRoute
    from tasks.allocation.routing_nightly import use_case_routing
    from tasks.core.jsonable import to_jsonable

    objective = _objective_for(use_case)
    result = use_case_routing(
        con,
        use_case=use_case,
        as_of=as_of,
        objective=objective,
        budget_config=config,
        columns=args.features.split(",") if args.features else None,
        seed=args.seed,
    )
    head = {"use_case": use_case, "objective": objective.describe()}
    if isinstance(result, CannotRoute):
        return {**head, "status": "cannot_route", "reasons": list(result.reasons), "table": None}
    body = to_jsonable(result)
    body.pop("policy", None)  # the estimates behind it are in "estimates"
    body["estimates"] = to_jsonable(result.policy.estimates)
    return {**head, **body}


def _bandit(args: argparse.Namespace) -> int:
    from tasks.allocation.bandits import bandit_allocation, contextual_allocation

    con, config, as_of = _open(args)
    opts = config.get("bandit", {})
    window = args.window_days or int(opts.get("window_days", 14))
    floor = args.floor if args.floor is not None else float(opts.get("floor", 0.02))
    reward = args.reward or str(opts.get("reward", "quality"))
    with closing(con), user_errors():
        allocations, contextual, linucb = [], [], []
        for use_case in _use_cases(con, args.use_case, as_of, window):
            allocations.append(
                bandit_allocation(
                    con,
                    use_case=use_case,
                    as_of=as_of,
                    window_days=window,
                    floor=floor,
                    seed=args.seed,
                    reward=reward,  # type: ignore[arg-type]
                    draws=int(opts.get("draws", 20_000)),
                )
            )
            if args.contextual:
                contextual.append(_routing_entry(con, use_case, as_of, args, config))
            if args.linucb:
                features = (
                    args.features.split(",")
                    if args.features
                    else list(opts.get("linucb_features", ["task_type", "user_segment"]))
                )
                linucb.append(
                    contextual_allocation(
                        con,
                        use_case=use_case,
                        as_of=as_of,
                        window_days=window,
                        features=features,
                        alpha=float(opts.get("linucb_alpha", 1.0)),
                        floor=floor,
                        reward=reward,  # type: ignore[arg-type]
                    )
                )
    payload: dict[str, Any] = {"as_of": as_of, "allocations": allocations, "contextual": contextual}
    if args.linucb:
        payload["linucb"] = linucb
    emit(payload, as_json=args.json, human=_bandit_human)
    return 0


# ---------------------------------------------------------------------------------- offpolicy


def _offpolicy_human(result: Any) -> str:
    e = result.estimate
    lines = [
        f"Off-policy estimate for {result.use_case} ({result.start}..{result.end}, "
        f"reward={result.reward}, context={result.context}) [{result.status}]",
        *(f"  {r}" for r in result.reasons),
    ]
    if e.status == "ok":
        lines.append(f"  logged policy value {e.logged_value:.4f}, ESS {e.ess:.0f}")
        for name in ("ips", "snips", "dr"):
            est = getattr(e, name)
            lines.append(
                f"  {name:<6} {est.value:.4f}  [{est.lower:.4f}, {est.upper:.4f}] "
                f"({e.level:.0%} interval)"
            )
    return "\n".join(lines)


def _offpolicy(args: argparse.Namespace) -> int:
    from tasks.allocation.offpolicy import evaluate_policy, parse_policy_document

    with user_errors():
        policy, table_context = parse_policy_document(args.policy, use_case=args.use_case)
    con, config, as_of = _open(args)
    opts = config.get("offpolicy", {})
    end = args.end or as_of
    start = args.start or end - dt.timedelta(days=int(opts.get("window_days", 14)) - 1)
    context = args.context if args.context is not None else table_context
    if context is None:
        context = opts.get("context", "task_type")
    with closing(con), user_errors():
        result = evaluate_policy(
            con,
            use_case=args.use_case,
            policy=policy,
            start=start,
            end=end,
            context=context or None,
            reward=args.reward or str(opts.get("reward", "quality")),
            level=float(opts.get("level", 0.95)),
            min_ess=float(opts.get("min_ess", 200)),
            max_unsupported_mass=float(opts.get("max_unsupported_mass", 0.01)),
        )
    emit(result, as_json=args.json, human=_offpolicy_human)
    return 0


def register(subparsers: Any) -> None:
    """Add ``budget``, ``bandit`` and ``offpolicy`` to the ``llmopt`` parser."""
    p = subparsers.add_parser(
        "budget",
        help="month-to-date spend, month-end forecast and the best traffic mix under budget",
    )
    p.add_argument("--as-of", type=iso_date, help="last day counted (default: last logged day)")
    p.add_argument("--use-case", help="only this use case")
    p.add_argument("--no-mix", action="store_true", help="skip the budget traffic mix")
    p.add_argument(
        "--frontier",
        action="store_true",
        help="mix only Pareto-frontier configurations (default: every config with enough data)",
    )
    add_json_flag(p)
    p.set_defaults(handler=guarded(_budget))

    p = subparsers.add_parser(
        "bandit", help="Thompson-sampling (and --contextual LinUCB) traffic weights per use case"
    )
    p.add_argument("--use-case", help="only this use case (default: all with recent calls)")
    p.add_argument("--as-of", type=iso_date, help="last day counted (default: last logged day)")
    p.add_argument("--window-days", type=int, help="statistics window (default: budget.toml)")
    p.add_argument("--floor", type=float, help="minimum weight per arm")
    p.add_argument(
        "--reward",
        choices=["quality", "success", "feedback"],
        help="what an arm is rewarded on (default: budget.toml [bandit] reward, else quality)",
    )
    p.add_argument("--seed", type=int, default=0, help="posterior-draw seed (default 0)")
    p.add_argument(
        "--contextual",
        action="store_true",
        help="also a per-context routing table on the use case's objective (its JSON is a "
        "valid offpolicy --policy)",
    )
    p.add_argument("--linucb", action="store_true", help="also LinUCB weights per context cell")
    p.add_argument(
        "--features", help="comma-separated context columns (routing) or features (LinUCB)"
    )
    add_json_flag(p)
    p.set_defaults(handler=guarded(_bandit))

    p = subparsers.add_parser(
        "offpolicy", help="IPS / SNIPS / doubly-robust value of a candidate policy from the logs"
    )
    p.add_argument("--use-case", required=True, help="the use case whose logs are used")
    p.add_argument(
        "--policy",
        required=True,
        help='JSON or a JSON file: {"cell": {"config_id": prob}}, {"config_id": prob}, a '
        "routing table, or the JSON output of llmopt bandit --contextual",
    )
    p.add_argument("--start", type=iso_date, help="first day (default: end - window + 1)")
    p.add_argument("--end", type=iso_date, help="last day (default: last logged day)")
    p.add_argument("--context", help="context column the policy is keyed by ('' for none)")
    p.add_argument(
        "--reward",
        choices=["quality", "success"],
        help="the outcome valued (default: budget.toml [offpolicy] reward, else quality)",
    )
    add_json_flag(p)
    p.set_defaults(handler=guarded(_offpolicy))
