"""Contextual routing under a budget: APGR and CPT in world (b), beside random mixing and oracle.

``python tests/benchmarks/bench_routing.py [--quick] [--seeds N]`` prints markdown tables and
writes ``data/benchmarks/routing.json``.

World (b) (``tasks.simulation.worlds_routing.segmented_world``): a logged 50/50 random routing
between a strong, expensive model and a weak, cheap one, whose qualities differ per user segment
(in two segments the cheap model is as good or better). For each budget on a grid (the cost cap
per request from the weak model's cost to the strong model's), the routing table is learned from
the logs by the entry function (``plan_contextual_routing``, objective "maximise quality s.t. cost
per request <= cap") and graded on the simulator's exact truth (held out: the learner never sees
it). This gives the quality-vs-strong-share curve routing research reports:

* **APGR**: area under the performance-gap-recovered curve ``PGR(s) = (q(s) - q_weak) /
  (q_strong - q_weak)`` over the strong model's share ``s`` in [0, 1], trapezoids through the
  measured points and the endpoints (all weak, all strong). Random mixing scores 0.5.
* **CPT(x%)**: the smallest strong share at which the curve recovers x% of the gap.

Beside it: random mixing (the straight line) and the per-segment oracle (the best table at each
strong share, from the truth). Timings: the routing SQL aggregate and one plan, beside a bare
DuckDB GROUP BY over the same rows and one bare ``scipy.optimize.linprog``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Clock, bench_parser, markdown_table, peak_rss_mib, write_result

from strategies.routing import RoutingObjective
from tasks.allocation.routing import (
    RoutingProposal,
    plan_contextual_routing,
    routing_inputs,
)
from tasks.simulation.files import load_simulated
from tasks.simulation.worlds_routing import RoutingWorld, segmented_world
from tasks.warehouse.connection import connect

FRACTIONS = tuple(round(f, 2) for f in np.linspace(0.0, 1.0, 11))


def curve_metrics(shares: list[float], pgr: list[float]) -> dict[str, float]:
    """APGR and CPT(50%) / CPT(80%) of a curve through ``(0, 0)``, the points and ``(1, 1)``."""
    points = sorted({(0.0, 0.0), *zip(shares, pgr, strict=True), (1.0, 1.0)})
    s = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    area = float(np.sum((s[1:] - s[:-1]) * (y[1:] + y[:-1]) / 2.0))

    def cpt(target: float) -> float:
        for i in range(1, len(s)):
            if y[i] >= target:
                if y[i] == y[i - 1]:
                    return float(s[i])
                t = (target - y[i - 1]) / (y[i] - y[i - 1])
                return float(s[i - 1] + max(t, 0.0) * (s[i] - s[i - 1]))
        return 1.0

    return {"apgr": area, "cpt50": cpt(0.5), "cpt80": cpt(0.8)}


def strong_share(world: RoutingWorld, policy: dict[str, dict[str, float]]) -> float:
    """True share of all traffic the policy sends to the strong model."""
    return sum(
        seg.share * policy.get(seg.name, policy["*"]).get(world.strong.config_id, 0.0)
        for seg in world.segments
    )


def oracle_curve(world: RoutingWorld, grid: int = 201) -> tuple[list[float], list[float]]:
    """Best true quality at each strong share: strong goes to the segments that gain most."""
    q_w = world.policy_metrics({"*": {world.weak.config_id: 1.0}})[0]
    order = sorted(world.segments, key=lambda g: g.weak_quality - g.strong_quality)
    shares, quality = [], []
    for s in np.linspace(0.0, 1.0, grid):
        left, q = float(s), q_w
        for seg in order:  # largest gain first
            take = min(seg.share, left)
            q += take * (seg.strong_quality - seg.weak_quality)
            left -= take
        shares.append(float(s))
        quality.append(q)
    return shares, quality


def run_seed(world: RoutingWorld) -> dict[str, Any]:
    con = connect(path=":memory:")
    load_simulated(con, world.simulate())
    end = world.start + dt.timedelta(days=world.days - 1)
    c_w, c_s = world.cost(world.weak), world.cost(world.strong)
    base = RoutingObjective(kind="max_quality", max_cost_per_request=c_s)
    with Clock() as sql_clock:
        inputs = routing_inputs(
            con, use_case=world.use_case, start=world.start, end=end, objective=base
        )
    with Clock() as bare_clock:
        con.execute(
            "SELECT user_segment, config_id, count(*), sum(quality), sum(cost_usd), "
            "sum(1 / propensity), sum(quality / propensity) FROM usage_logs GROUP BY ALL"
        ).fetchall()
    q_w = world.policy_metrics({"*": {world.weak.config_id: 1.0}})[0]
    q_s = world.policy_metrics({"*": {world.strong.config_id: 1.0}})[0]
    shares, pgr, plan_seconds, proposed = [], [], [], 0
    for f in FRACTIONS:
        objective = dataclasses.replace(base, max_cost_per_request=c_w + f * (c_s - c_w))
        with Clock() as plan_clock:
            result = plan_contextual_routing(dataclasses.replace(inputs, objective=objective))
        plan_seconds.append(plan_clock.seconds)
        assert isinstance(result, RoutingProposal), result
        proposed += result.status == "proposed"
        policy = {**result.table["rows"], "*": result.table["default"]}
        quality = world.policy_metrics(policy)[0]
        shares.append(strong_share(world, policy))
        pgr.append((quality - q_w) / (q_s - q_w))
    con.close()
    return {
        "metrics": curve_metrics(shares, pgr),
        "points": list(zip(FRACTIONS, shares, pgr, strict=True)),
        "proposed": proposed,
        "sql_s": sql_clock.seconds,
        "bare_sql_s": bare_clock.seconds,
        "plan_s": statistics.median(plan_seconds),
        "rows": world.requests_per_day * world.days,
    }


def bare_linprog_seconds() -> float:
    """One scipy linprog of the same shape (4 contexts x 2 arms, one budget row)."""
    rng = np.random.default_rng(0)
    with Clock() as clock:
        optimize.linprog(
            c=-rng.random(8),
            A_ub=rng.random((1, 8)),
            b_ub=[1.0],
            A_eq=np.kron(np.eye(4), np.ones((1, 2))),
            b_eq=np.ones(4),
            bounds=[(0, 1)] * 8,
            method="highs",
        )
    return clock.seconds


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=None, help="worlds drawn (default 5)")
    args = parser.parse_args(argv)
    seeds = args.seeds or (2 if args.quick else 5)
    days, per_day = (7, 1000) if args.quick else (14, 2000)
    runs = [
        run_seed(segmented_world(requests_per_day=per_day, days=days, seed=100 + s))
        for s in range(seeds)
    ]
    world = segmented_world(requests_per_day=per_day, days=days)
    q_w = world.policy_metrics({"*": {world.weak.config_id: 1.0}})[0]
    q_s = world.policy_metrics({"*": {world.strong.config_id: 1.0}})[0]
    o_s, o_q = oracle_curve(world)
    oracle = curve_metrics(o_s, [(q - q_w) / (q_s - q_w) for q in o_q])
    random_mix = curve_metrics([0.5], [0.5])

    def summary(key: str) -> str:
        values = [r["metrics"][key] for r in runs]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {sd:.3f}"

    table = [
        {"router": "random mixing", "APGR": random_mix["apgr"], "CPT(50%)": 0.5, "CPT(80%)": 0.8},
        {
            "router": f"routing table (ours, {seeds} seeds)",
            "APGR": summary("apgr"),
            "CPT(50%)": summary("cpt50"),
            "CPT(80%)": summary("cpt80"),
        },
        {
            "router": "per-segment oracle (truth)",
            "APGR": oracle["apgr"],
            "CPT(50%)": oracle["cpt50"],
            "CPT(80%)": oracle["cpt80"],
        },
    ]
    print(f"World (b): {days} days x {per_day} requests/day logged at 50/50, {seeds} seeds")
    print(markdown_table(table))
    curve = [
        {"budget (cap between weak and strong cost)": f, "strong share": s, "PGR": p}
        for f, s, p in runs[0]["points"]
    ]
    print()
    print(markdown_table(curve))

    def median(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    timings = [
        {"step": "routing SQL aggregate (4 columns)", "s": median("sql_s")},
        {"step": "bare DuckDB GROUP BY (1 column)", "s": median("bare_sql_s")},
        {"step": "plan (shrinkage + LP + DR)", "s": median("plan_s")},
        {"step": "bare scipy linprog", "s": bare_linprog_seconds()},
    ]
    print()
    print(markdown_table(timings))
    print(f"peak RSS {peak_rss_mib():.0f} MiB")
    path = write_result(
        "routing",
        {
            "days": days,
            "requests_per_day": per_day,
            "seeds": seeds,
            "q_weak": q_w,
            "q_strong": q_s,
            "ours": [r["metrics"] for r in runs],
            "oracle": oracle,
            "random": random_mix,
            "curve_seed0": runs[0]["points"],
            "proposed_per_seed": [r["proposed"] for r in runs],
            "timings": timings,
            "peak_rss_mib": peak_rss_mib(),
        },
        quick=args.quick,
        out=args.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
