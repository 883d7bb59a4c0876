"""A/A worlds for the decision loop: nothing may be promoted over 28 nightly looks.

``python tests/benchmarks/bench_loop.py [--quick] [--seeds N]`` prints a markdown table and writes
``data/benchmarks/loop.json``.

What is measured (issue 12): worlds where production and two other configurations are identical
(:func:`tasks.simulation.worlds_loop.aa_nights`: 400 production and 200 + 200 candidate requests a
night), each looked at every night for 28 nights by the nightly flow's promotion decision
(:func:`strategies.promotion.propose_promotion` on cumulative statistics, alpha = 1 - the
objective's level = 0.05). A world counts once if anything is ever proposed. The rate comes with its
exact (Clopper-Pearson) 95% interval, per objective, beside the same decision taken with a
fixed-horizon z-interval every night (the peeking baseline the sequential test replaces).
Target: at most alpha.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Clock, bench_parser, markdown_table, write_result

from strategies.objective import Objective
from tasks.simulation.worlds_loop import aa_nights, aa_promotion_rate

NIGHTS = 28
OBJECTIVES = {
    "quality-focused": Objective.from_preset("quality-focused"),
    "balanced": Objective.from_preset("balanced"),
    "cost-focused": Objective.from_preset("cost-focused"),
    "max-quality (cost <= $0.01)": Objective.max_quality(max_cost_per_request=0.01),
}


def _rate(hits: int, total: int) -> dict[str, Any]:
    ci = sps.binomtest(hits, total).proportion_ci(confidence_level=0.95, method="exact")
    return {"hits": hits, "of": total, "rate": hits / total, "ci_low": ci.low, "ci_high": ci.high}


def peeking_baseline(objective: Objective, seeds: range) -> int:
    """Worlds where a fixed one-sided z-test (alpha / 2 candidates) fires on some night."""
    z = float(sps.norm.ppf(1 - (1 - objective.level) / 2))
    hits = 0
    for seed in seeds:
        for stats in aa_nights(seed=seed, nights=NIGHTS):
            prod = objective.score(stats[0])
            fired = False
            for cand in map(objective.score, stats[1:]):
                diff, se = cand.value - prod.value, math.hypot(cand.se, prod.se)
                fired |= diff - z * se > 0
            if fired:
                hits += 1
                break
    return hits


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=None, help="A/A worlds per objective")
    args = parser.parse_args(argv)
    n = args.seeds or (40 if args.quick else 400)
    rows = []
    with Clock() as clock:
        for name, objective in OBJECTIVES.items():
            result = aa_promotion_rate(objective, seeds=range(n), nights=NIGHTS)
            seq = _rate(result.proposed, result.worlds)
            base = _rate(peeking_baseline(objective, range(n)), n)
            rows.append(
                {
                    "objective": name,
                    "worlds": n,
                    "promoted (sequential)": seq["hits"],
                    "rate": seq["rate"],
                    "95% CI": f"[{seq['ci_low']:.3f}, {seq['ci_high']:.3f}]",
                    "fixed z every night": base["rate"],
                    "fixed 95% CI": f"[{base['ci_low']:.3f}, {base['ci_high']:.3f}]",
                }
            )
    print(f"A/A loop, {NIGHTS} nightly looks, alpha 0.05 ({clock.seconds:.1f} s)\n")
    print(markdown_table(rows))
    write_result("loop", {"nights": NIGHTS, "alpha": 0.05, "rows": rows}, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
