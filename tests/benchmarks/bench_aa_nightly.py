"""A/A experiments looked at every night for 28 nights: false SRM stops, false ships, false harm.

``python tests/benchmarks/bench_aa_nightly.py [--quick] [--experiments N] [--srm-experiments M]``
prints markdown tables and writes ``data/benchmarks/aa_nightly.json``.

What is measured (issue 14): healthy A/A experiments (both arms identical, 50/50 assignment) are
analysed after each of 28 nights, the way the nightly flow does, and we count how many are ever
stopped or shipped. Each rate comes with its exact (Clopper-Pearson) 95% interval.

1. **SRM**: units per arm per night (Poisson traffic with weekly seasonality, binomial split).
   The always-valid sequential test (``sequential_srm_test``) with sticky stops, beside the
   chi-square test re-run on the cumulative counts every night (``scipy.stats.chisquare``: the
   former behaviour). Target: at most ``srm_alpha`` = 0.001.
2. **Decisions per method**: ``analyze_experiment`` on cumulative sufficient statistics
   (primary ``quality``, guardrail ``error_rate`` with a 0.01 absolute margin, weights 50/50),
   every night, stopping at the first ship or stop (stops are sticky). ``nightly`` rows are the
   shipped rules (``looks="nightly"``: sequential; fixed at its 28-day horizon; bayesian
   refused); ``single look each night`` rows re-run the one-look rule nightly (the former
   behaviour), for contrast. Target: ship and harm-stop rates at most alpha = 0.05.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from harness import Clock, bench_parser, markdown_table, peak_rss_mib, write_result
from scipy import stats as sps

from strategies.experiments import (
    ExperimentSpec,
    Guardrail,
    MeanStats,
    MetricData,
    ProportionStats,
    analyze_experiment,
    sequential_srm_test,
)

NIGHTS = 28
ALPHA = 0.05
SRM_ALPHA = 0.001
ARMS = ("control", "treatment")


def _rate(hits: int, total: int) -> dict[str, Any]:
    ci = sps.binomtest(hits, total).proportion_ci(confidence_level=0.95, method="exact")
    return {"hits": hits, "of": total, "rate": hits / total, "ci_low": ci.low, "ci_high": ci.high}


def _traffic(rng: np.random.Generator, n_exp: int, per_day: float) -> np.ndarray:
    season = 1.0 + 0.3 * np.sin(2 * np.pi * np.arange(NIGHTS) / 7)
    return rng.poisson(per_day * season, size=(n_exp, NIGHTS)).astype(float)


def srm_rates(n_exp: int, seed: int) -> list[dict[str, Any]]:
    """Share of A/A experiments ever stopped for SRM over 28 nights, two ways."""
    rng = np.random.default_rng(seed)
    units = _traffic(rng, n_exp, 600.0)
    treated = rng.binomial(units.astype(int), 0.5).astype(float)
    cum_t, cum_c = np.cumsum(treated, axis=1), np.cumsum(units - treated, axis=1)
    seq_stop = np.zeros(n_exp, dtype=bool)
    chi_stop = np.zeros(n_exp, dtype=bool)
    for night in range(NIGHTS):
        counts = np.stack([cum_c[:, night], cum_t[:, night]], axis=1)
        seq_stop |= sequential_srm_test(counts, [[0.5, 0.5]], alpha=SRM_ALPHA).mismatch
        chi_p = sps.chisquare(counts, axis=1).pvalue
        chi_stop |= chi_p < SRM_ALPHA
    return [
        {"test": "sequential (Dirichlet-multinomial), sticky", **_rate(int(seq_stop.sum()), n_exp)},
        {"test": "chi-square re-run nightly (former)", **_rate(int(chi_stop.sum()), n_exp)},
    ]


def _arms(rng: np.random.Generator, n_exp: int) -> list[tuple[MeanStats, ProportionStats]]:
    """Cumulative per-night statistics of one arm: quality ~ N(0.7, 0.15), 2% errors."""
    n = _traffic(rng, n_exp, 300.0) + 2.0
    total = rng.normal(n * 0.7, 0.15 * np.sqrt(n))
    squares = 0.15**2 * rng.chisquare(n - 1.0) + total**2 / n
    errors = rng.binomial(n.astype(int), 0.02).astype(float)
    cn, cs, css, ce = (np.cumsum(a, axis=1) for a in (n, total, squares, errors))
    return [
        (
            MeanStats(n=cn[i], sum=cs[i], sum_squares=css[i]),
            ProportionStats(n=cn[i], successes=ce[i]),
        )
        for i in range(n_exp)
    ]


def _upto(stats: MeanStats | ProportionStats, k: int) -> Any:
    if isinstance(stats, MeanStats):
        return MeanStats(n=stats.n[:k], sum=stats.sum[:k], sum_squares=stats.sum_squares[:k])
    return ProportionStats(n=stats.n[:k], successes=stats.successes[:k])


def _first_outcome(spec: ExperimentSpec, control: Any, treatment: Any, looks: str) -> str:
    """The first ship or stop over 28 nights (stops are sticky), else the last night's action."""
    action = "keep running"
    for night in range(1, NIGHTS + 1):
        metrics = [
            MetricData(
                metric=name, kind=kind, arms=("control", "treatment"),
                stats=(_upto(control[j], night), _upto(treatment[j], night)),
                higher_is_better=name == "quality",
            )
            for j, (name, kind) in enumerate((("quality", "mean"), ("error_rate", "proportion")))
        ]  # fmt: skip
        units = {
            "control": float(control[0].n[night - 1]),
            "treatment": float(treatment[0].n[night - 1]),
        }
        report = analyze_experiment(
            spec, metrics, unit_counts=units, days_elapsed=night, looks=looks
        )
        action = report.decision.action
        if action in ("ship", "stop: harm", "stop: SRM", "cannot analyse"):
            return action  # a refusal is the same every night
    return action


def decision_rates(n_exp: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    control, treatment = _arms(rng, n_exp), _arms(rng, n_exp)
    guard = (Guardrail(metric="error_rate", margin=0.01, relative=False),)
    base = {"experiment_id": "aa", "alpha": ALPHA, "srm_alpha": SRM_ALPHA, "max_days": NIGHTS,
            "weights": (("control", 0.5), ("treatment", 0.5)), "guardrails": guard,
            "n_star": 5000.0}  # fmt: skip
    cases = [
        ("sequential", "nightly"),
        ("fixed", "nightly"),
        ("bayesian", "nightly"),
        ("fixed", "single"),
        ("bayesian", "single"),
    ]
    out: list[dict[str, Any]] = []
    for method, looks in cases:
        spec = ExperimentSpec(method=method, **base)  # type: ignore[arg-type]
        with Clock() as clock:
            outcomes = [_first_outcome(spec, control[i], treatment[i], looks) for i in range(n_exp)]
        label = "nightly rule" if looks == "nightly" else "single look each night (former)"
        ship, harm = outcomes.count("ship"), outcomes.count("stop: harm")
        refused = outcomes.count("cannot analyse")
        out.append(
            {
                "method": method, "rule": label,
                "ship": _rate(ship, n_exp), "harm_stop": _rate(harm, n_exp),
                "srm_stop": _rate(outcomes.count("stop: SRM"), n_exp),
                "refused": refused, "seconds": clock.seconds,
            }
        )  # fmt: skip
    return out


def _pct(r: dict[str, Any]) -> str:
    return f"{100 * r['rate']:.2f}% [{100 * r['ci_low']:.2f}, {100 * r['ci_high']:.2f}]"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = bench_parser(__doc__)
    parser.add_argument("--experiments", type=int, default=None, help="A/A experiments/method")
    parser.add_argument("--srm-experiments", type=int, default=None, help="A/A for SRM")
    args = parser.parse_args(argv)
    n_dec = args.experiments or (60 if args.quick else 1000)
    n_srm = args.srm_experiments or (20_000 if args.quick else 200_000)
    with Clock() as srm_clock:
        srm = srm_rates(n_srm, seed=20261130)
    decisions = decision_rates(n_dec, seed=20261131)
    print(f"SRM over {NIGHTS} nights, {n_srm:,} A/A experiments, srm_alpha {SRM_ALPHA}:\n")
    print(markdown_table([{"test": r["test"], "ever stopped (95% CI)": _pct(r)} for r in srm]))
    print(f"\nDecisions over {NIGHTS} nights, {n_dec:,} A/A experiments per row, alpha {ALPHA}:\n")
    rows = [
        {"method": d["method"], "rule": d["rule"], "shipped (95% CI)": _pct(d["ship"]),
         "stopped for harm (95% CI)": _pct(d["harm_stop"]), "refused": d["refused"]}
        for d in decisions
    ]  # fmt: skip
    print(markdown_table(rows))
    payload = {
        "nights": NIGHTS, "srm_experiments": n_srm, "decision_experiments": n_dec,
        "srm": srm, "srm_seconds": srm_clock.seconds, "decisions": decisions,
        "peak_rss_mib": peak_rss_mib(),
    }  # fmt: skip
    path = write_result("aa_nightly", payload, quick=args.quick, out=args.out)
    print(f"\nwritten {path}")
    return payload


if __name__ == "__main__":
    main()
