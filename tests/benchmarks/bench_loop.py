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

With experiment creation (issue 12 item 2): the same worlds, where the two candidates' traffic is
non-randomized exploration (no propensities), so a promising candidate gets the pre-registered
experiment :func:`strategies.experiment_design.propose_experiment` designs (``[auto_experiments]``
as in the flow test: half the traffic, mde 0.02 quality, 3 to 14 days). The experiment's two arms
are drawn from the same A/A distributions at the designed share and analysed every night exactly
as the nightly flow does (:func:`strategies.experiments.analyze_experiment`, nightly looks, the
spec the flow writes: :meth:`ExperimentDesign.spec_table` through
:func:`tasks.experiments.spec.experiment_spec`). Creating an experiment is not a promotion; a world
counts as a false positive if anything is promoted from the logs **or** an experiment ships.
Simplification: the promotion test keeps reading the exploration traffic only (in the flow the
experiment's rows join the candidate's statistics after the experiment ends).

With logged propensities that vary by context: :func:`tasks.simulation.worlds_loop.logged_nights`
A/A worlds (1,200 requests a night; the candidate is logged with propensity 0.8 on the easy
context and 0.2 on the hard one, so its plain mean is inflated), looked at every night for 28
nights on cumulative logs by the flow's decision: the per-arm sequential test re-judged on the
paired doubly-robust difference (:func:`strategies.offpolicy_promotion.dr_promotion`), beside the
per-arm test alone (what the flow did before: confounded).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from harness import Clock, bench_parser, markdown_table, write_result

from strategies.experiment_design import DesignPolicy, ExperimentDesign, propose_experiment
from strategies.experiments import (
    NIGHTLY_LOOKS,
    MeanStats,
    MetricData,
    ProportionStats,
    analyze_experiment,
)
from strategies.objective import Objective
from strategies.offpolicy_promotion import dr_promotion
from strategies.promotion import propose_promotion
from tasks.experiments.spec import experiment_spec
from tasks.simulation.worlds_loop import _draw, aa_nights, aa_promotion_rate, logged_nights

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


PER_NIGHT = (400, 200, 200)
DESIGN = DesignPolicy(traffic_share=0.5, mde=0.02, min_days=3, max_days=14)
_METRICS = {  # metric -> (kind, higher is better, column of the A/A draws)
    "quality": ("mean", True, "quality"),
    "cost_usd": ("mean", False, "cost"),
    "latency_ms": ("mean", False, "latency"),
    "error_rate": ("proportion", False, "success"),
}


class _Experiment:
    """One running A/A experiment: cumulative per-night statistics of both arms."""

    def __init__(self, design: ExperimentDesign, rng: np.random.Generator) -> None:
        self.design = design
        table = design.spec_table()
        spec = experiment_spec(design.experiment_id, {"experiments": {design.experiment_id: table}})
        assert spec is not None
        self.spec = spec
        self.rng = rng
        self.per_arm = round(design.requests_per_day * design.traffic_share / 2)
        self.days = 0
        self.sums: dict[str, list[list[tuple[float, float, float]]]] = {
            m: [[], []] for m in _METRICS
        }

    def night(self) -> str:
        """One more day of traffic, then tonight's decision."""
        self.days += 1
        for arm in range(2):
            draw = _draw(self.rng, self.per_arm)
            for metric, (_, _, column) in _METRICS.items():
                values = draw[column]
                if metric == "error_rate":
                    values = (~draw["success"]).astype(float)
                values = values[np.isfinite(values)]
                prev = self.sums[metric][arm][-1] if self.sums[metric][arm] else (0.0, 0.0, 0.0)
                self.sums[metric][arm].append(
                    (
                        prev[0] + values.size,
                        prev[1] + float(values.sum()),
                        prev[2] + float((values**2).sum()),
                    )
                )
        metrics = [self._metric(m) for m in (self.spec.primary, *self._guarded())]
        units = {v: float(self.per_arm * self.days) for v in ("control", "treatment")}
        report = analyze_experiment(
            self.spec, metrics, unit_counts=units, days_elapsed=self.days, looks=NIGHTLY_LOOKS
        )
        return report.decision.action

    def _guarded(self) -> list[str]:
        return [g.metric for g in self.spec.guardrails if g.metric != self.spec.primary]

    def _metric(self, metric: str) -> MetricData:
        kind, higher, _ = _METRICS[metric]
        stats: list[MeanStats | ProportionStats] = []
        for arm in range(2):
            n, total, squares = (np.array(c) for c in zip(*self.sums[metric][arm], strict=True))
            if kind == "proportion":
                stats.append(ProportionStats(n=n, successes=total))
            else:
                stats.append(MeanStats(n=n, sum=total, sum_squares=squares))
        return MetricData(
            metric=metric,
            kind=kind,
            arms=("control", "treatment"),
            stats=tuple(stats),
            higher_is_better=higher,
        )


def aa_with_experiments(objective: Objective, seeds: range) -> dict[str, int]:
    """A/A worlds looked at nightly, experiments created from promising candidates.

    Returns:
        Counts: worlds, promoted from logs, experiments created, experiments shipped, and
        worlds with either false positive.
    """
    counts = dict.fromkeys(("worlds", "promoted", "created", "shipped", "false_positive"), 0)
    for seed in seeds:
        counts["worlds"] += 1
        rng = np.random.default_rng([seed, 99])
        running: _Experiment | None = None
        tried: set[str] = set()
        fired = False
        for stats in aa_nights(seed=seed, nights=NIGHTS, per_night=PER_NIGHT):
            busy = {running.design.treatment_config_id} if running else set()
            others = [s for s in stats[1:] if s.config_key not in busy]
            decision = propose_promotion(
                objective, production=stats[0], candidates=others, alpha=1 - objective.level
            )
            if decision.action == "propose":
                counts["promoted"] += 1
                fired = True
                break
            if running is None and decision.promising:
                best = max(decision.promising, key=lambda c: c.difference)
                proposal = propose_experiment(
                    use_case="aa",
                    objective=objective,
                    production=stats[0],
                    candidate=next(s for s in stats if s.config_key == best.config_key),
                    requests_per_day=float(sum(PER_NIGHT)),
                    policy=DesignPolicy(**{**DESIGN.__dict__, "alpha": 1 - objective.level}),
                    tried=tried,
                )
                if proposal.design is not None:
                    counts["created"] += 1
                    tried.add(proposal.design.treatment_config_id)
                    running = _Experiment(proposal.design, rng)
                continue  # the experiment's first traffic arrives tomorrow
            if running is not None:
                action = running.night()
                if action == "ship":
                    counts["shipped"] += 1
                    fired = True
                    break
                if action != "keep running":
                    running = None  # stopped or inconclusive: over, never again for that pair
        counts["false_positive"] += int(fired)
    return counts


def aa_logged_rates(seeds: range, window: int | None = None) -> dict[str, Any]:
    """Confounded A/A worlds with logged propensities: worlds ever promoted, two decisions.

    ``window``: the DR sums cover the last ``window`` nights (the flow's ``[routing]`` window).
    """
    objective = OBJECTIVES["quality-focused"]
    alpha = 1 - objective.level
    dr_hits = plain_hits = 0
    for seed in seeds:
        dr_fired = plain_fired = False
        nights = logged_nights(seed=seed, objective=objective, nights=NIGHTS, window=window)
        for stats, logged in nights:
            plain = propose_promotion(
                objective, production=stats[0], candidates=stats[1:], alpha=alpha
            )
            plain_fired |= plain.action == "propose"
            dr = dr_promotion(plain, logged, context="task_type", alpha=alpha)
            dr_fired |= dr.action == "propose"
            if dr_fired:
                break
        dr_hits += dr_fired
        plain_hits += plain_fired
    dr_rate, plain_rate = _rate(dr_hits, len(seeds)), _rate(plain_hits, len(seeds))
    return {
        "objective": "quality-focused",
        "DR window": "cumulative" if window is None else f"last {window} nights",
        "worlds": len(seeds),
        "promoted (doubly robust)": dr_hits,
        "rate": dr_rate["rate"],
        "95% CI": f"[{dr_rate['ci_low']:.3f}, {dr_rate['ci_high']:.3f}]",
        "per-arm sequential alone": plain_rate["rate"],
        "its 95% CI": f"[{plain_rate['ci_low']:.3f}, {plain_rate['ci_high']:.3f}]",
    }


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
    with_experiments = []
    with Clock() as clock:
        for name, objective in OBJECTIVES.items():
            c = aa_with_experiments(objective, range(n))
            fp = _rate(c["false_positive"], c["worlds"])
            with_experiments.append(
                {
                    "objective": name,
                    "worlds": c["worlds"],
                    "promoted from logs": c["promoted"],
                    "experiments created": c["created"],
                    "experiments shipped": c["shipped"],
                    "false-positive rate": fp["rate"],
                    "95% CI": f"[{fp['ci_low']:.3f}, {fp['ci_high']:.3f}]",
                }
            )
    print(f"\nA/A loop with experiment creation ({clock.seconds:.1f} s)\n")
    print(markdown_table(with_experiments))
    with Clock() as clock:
        logged = [aa_logged_rates(range(min(n, 200)), w) for w in (None, 14)]
    print(f"\nA/A loop, logged propensities varying by context ({clock.seconds:.1f} s)\n")
    print(markdown_table(logged))
    write_result(
        "loop",
        {
            "nights": NIGHTS,
            "alpha": 0.05,
            "rows": rows,
            "with_experiments": with_experiments,
            "logged_propensities": logged,
        },
        quick=args.quick,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
