"""``llmopt search status|round`` and ``llmopt frontier``: Optuna search and the Pareto frontier.

Handlers import Optuna, DuckDB and the task modules lazily so ``llmopt --help`` stays fast.
Settings come from ``data/config/search.toml`` (``LLMOPT_CONFIG_DIR``); the warehouse from
``LLMOPT_WAREHOUSE``; studies from ``LLMOPT_OPTUNA_STORAGE`` (SQLite beside the warehouse).
``--as-of`` defaults to the last day with logged calls.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from flows.cli_support import CommandError, add_json_flag, emit, guarded, iso_date, user_errors

__all__ = ["register"]


def _weights(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"weights are key=value,...; got {part!r}") from exc
        if not sep:
            raise argparse.ArgumentTypeError(f"weights are key=value,...; got {part!r}")
    return out


def _settings_and_config() -> tuple[Any, Any]:
    from tasks.core.settings import load_settings
    from tasks.search.study import load_search_config

    settings = load_settings()
    return settings, load_search_config(settings)


def _warehouse(settings: Any) -> Any:
    from tasks.warehouse.connection import open_existing

    return open_existing(settings, read_only=True)


def _last_day(con: Any) -> dt.date:
    from tasks.warehouse.queries import latest_day

    day = latest_day(con)
    if day is None:
        raise CommandError("the warehouse has no usage logs yet")
    return day


def _use_cases(con: Any, requested: str | None, start: dt.date, end: dt.date) -> list[str]:
    if requested:
        return [requested]
    rows = con.execute(
        "SELECT DISTINCT use_case FROM usage_logs WHERE day BETWEEN ? AND ? ORDER BY 1",
        [start, end],
    ).fetchall()
    return [r[0] for r in rows]


# ---------------------------------------------------------------------------- search status
def _fmt_best(best: Any) -> str:
    if best is None:
        return "no trial told yet"
    return f"best #{best.trial_number} {best.config_id} score {best.score:.4f} (n={best.n})"


def _status_human(payload: dict[str, Any]) -> str:
    lines = []
    for s in payload["studies"]:
        if not s.exists:
            lines.append(f"{s.use_case}: {s.reason}")
            continue
        counts = ", ".join(f"{k.lower()} {v}" for k, v in s.trial_counts.items())
        lines.append(f"{s.use_case} [{s.study_name}] {counts}")
        lines.append(f"  {_fmt_best(s.best)}")
        for c in s.candidates:
            lines.append(f"  collecting: #{c.trial_number} {c.config_id} (asked {c.asked_on})")
    return "\n".join(lines) or "no use cases configured in search.toml"


def _status(args: argparse.Namespace) -> int:
    from tasks.search.study import search_status

    settings, config = _settings_and_config()
    studies = search_status(settings, use_case=args.use_case, config=config)
    emit({"studies": studies}, as_json=args.json, human=_status_human)
    return 0


# ---------------------------------------------------------------------------- search round
def _round_human(payload: dict[str, Any]) -> str:
    lines = [f"Search round as of {payload['as_of']}"]
    for r in payload["rounds"]:
        lines.append(f"{r.use_case} [{r.study_name}, {r.sampler}, {r.objective}]")
        for t in r.told:
            values = ", ".join(f"{v:.4f}" for v in t.values or ())
            lines.append(f"  told    #{t.trial_number} {t.config_id} n={t.n} -> {values}")
        for t in r.failed:
            lines.append(f"  failed  #{t.trial_number} {t.config_id}: {t.reason}")
        for t in r.still_pending:
            lines.append(f"  pending #{t.trial_number} {t.config_id}: {t.reason}")
        for c in r.new_candidates:
            lines.append(f"  new     #{c.trial_number} {c.config_id}")
        for rej in r.rejected:
            lines.append(f"  not served #{rej.trial_number} {rej.config_id}: {rej.reason}")
        if r.shortfall_reason:
            lines.append(f"  note: {r.shortfall_reason}")
        lines.append(f"  {_fmt_best(r.best)}")
    return "\n".join(lines)


def _round(args: argparse.Namespace) -> int:
    from tasks.search.study import run_search_round

    settings, config = _settings_and_config()
    con = _warehouse(settings)
    try:
        as_of = args.as_of or _last_day(con)
        start = as_of - dt.timedelta(days=config.lookback_days - 1)
        wanted = [args.use_case] if args.use_case else list(config.use_cases)
        present = set(_use_cases(con, None, start, as_of))
        use_cases = [uc for uc in wanted if args.use_case or uc in present]
        if not use_cases:
            raise CommandError(f"no configured use case has logs between {start} and {as_of}")
        rounds = []
        for uc in use_cases:
            rounds.append(
                run_search_round(
                    settings,
                    con,
                    use_case=uc,
                    as_of=as_of,
                    n_candidates=args.candidates,
                    config=config,
                )
            )
    finally:
        con.close()
    emit({"as_of": as_of, "rounds": rounds}, as_json=args.json, human=_round_human)
    return 0


# ---------------------------------------------------------------------------- frontier
def _frontier_human(payload: dict[str, Any]) -> str:
    lines = []
    for r in payload["frontiers"]:
        lines.append(
            f"{r.use_case} {r.start}..{r.end} preset {r.preset} z={r.z}: "
            f"{len(r.frontier)} of {len(r.points)} configurations on the frontier"
        )
        for p in sorted(r.points, key=lambda p: (not p.on_frontier, -p.score)):
            mark = "*" if p.on_frontier else " "
            flags = "" if p.feasible else f"  [{'; '.join(p.constraint_violations)}]"
            lines.append(
                f" {mark} {p.config_key:<55} q {p.quality:.3f}±{p.quality_se:.3f}  "
                f"${p.cost_usd:.5f}  p95 {p.latency_p95_ms:7.0f} ms  score {p.score:+.4f}{flags}"
            )
        for e in r.excluded:
            lines.append(f"   {e.config_key}: cannot analyse ({e.reason})")
        sel = r.selection
        lines.append(f"  selection [{sel.status}] {sel.config_key or '-'}: {sel.reason}")
        lines.append(f"  {r.production_note}")
    for path in payload.get("plots", []):
        lines.append(f"plot: {path}")
    return "\n".join(lines)


def _plot_path(base: Path, use_case: str, several: bool) -> Path:
    if not several:
        return base
    return base.with_name(f"{base.stem}-{use_case}{base.suffix or '.png'}")


def _frontier(args: argparse.Namespace) -> int:
    from tasks.core.config import load_config
    from tasks.search.frontier import compute_frontier, most_served_config, plot_frontier

    settings, _ = _settings_and_config()
    cfg = dict(load_config("search", settings).get("frontier", {}))
    con = _warehouse(settings)
    try:
        end = args.as_of or _last_day(con)
        window = int(args.window_days or cfg.get("window_days", 14))
        start = args.start or end - dt.timedelta(days=window - 1)
        use_cases = _use_cases(con, args.use_case, start, end)
        if not use_cases:
            raise CommandError(f"no logs between {start} and {end}")
        results = []
        for uc in use_cases:
            production = args.production or most_served_config(
                con, use_case=uc, start=start, end=end
            )
            with user_errors():
                results.append(
                    compute_frontier(
                        con,
                        use_case=uc,
                        start=start,
                        end=end,
                        production_config=production,
                        preset=args.preset or str(cfg.get("preset", "balanced")),
                        weights=args.weights,
                        quality_floor=_opt(args.quality_floor, cfg.get("quality_floor")),
                        latency_ceiling_ms=_opt(
                            args.latency_ceiling, cfg.get("latency_ceiling_ms")
                        ),
                        z=_opt(args.z, cfg.get("z", 1.96)) or 0.0,
                        min_requests=int(args.min_requests or cfg.get("min_requests", 100)),
                    )
                )
    finally:
        con.close()
    plots = []
    if args.plot:
        for r in results:
            plots.append(
                plot_frontier(r, _plot_path(Path(args.plot), r.use_case, len(results) > 1))
            )
    payload = {"frontiers": results, "plots": plots}
    emit(payload, as_json=args.json, human=_frontier_human)
    return 0


def _opt(value: float | None, default: Any) -> float | None:
    if value is not None:
        return value
    return None if default is None else float(default)


# ---------------------------------------------------------------------------- register
def register(subparsers: Any) -> None:
    search = subparsers.add_parser(
        "search", help="Optuna ask/tell search over model, prompt and sampling parameters"
    )
    sub = search.add_subparsers(dest="search_command", metavar="SUBCOMMAND", required=True)

    status = sub.add_parser("status", help="trials, candidates collecting traffic, best so far")
    status.add_argument("--use-case", help="one use case (default: every one in search.toml)")
    add_json_flag(status)
    status.set_defaults(handler=guarded(_status))

    rnd = sub.add_parser("round", help="tell ready trials their observed value, ask new candidates")
    rnd.add_argument("--use-case", help="one use case (default: configured ones with logs)")
    rnd.add_argument("--as-of", type=iso_date, help="UTC day the round is for (default: last day)")
    rnd.add_argument(
        "--candidates", type=int, help="candidates collecting traffic (default: config)"
    )
    add_json_flag(rnd)
    rnd.set_defaults(handler=guarded(_round))

    frontier = subparsers.add_parser(
        "frontier", help="noise-aware Pareto frontier (quality, cost, latency p95) and selection"
    )
    frontier.add_argument("--use-case", help="one use case (default: every one with logs)")
    frontier.add_argument(
        "--preset",
        choices=["quality-focused", "balanced", "cost-focused", "latency-focused"],
        help="reward weights for the selection (default: search.toml's preset, else balanced)",
    )
    frontier.add_argument("--weights", type=_weights, help="overrides, e.g. cost=0.2,latency=0.05")
    frontier.add_argument("--quality-floor", type=float, help="hard constraint: min mean quality")
    frontier.add_argument("--latency-ceiling", type=float, help="hard constraint: max p95 (ms)")
    frontier.add_argument("--z", type=float, help="significance for dominance (0 = plain Pareto)")
    frontier.add_argument("--min-requests", type=int, help="fewer requests: cannot analyse")
    frontier.add_argument("--production", help="production config id (default: most served)")
    frontier.add_argument(
        "--as-of", type=iso_date, help="last day of the window (default: last day)"
    )
    frontier.add_argument("--start", type=iso_date, help="first day (default: window before as-of)")
    frontier.add_argument("--window-days", type=int, help="window length (default: config)")
    frontier.add_argument("--plot", help="write a PNG here (suffixed per use case if several)")
    add_json_flag(frontier)
    frontier.set_defaults(handler=guarded(_frontier))
