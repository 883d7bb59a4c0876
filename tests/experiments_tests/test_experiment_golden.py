"""Golden tests: the engine against scipy / statsmodels / numpy references on fixed inputs."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats import proportion as sm_prop
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower, TTestIndPower

import strategies.experiments as ex
import strategies.experiments.power as pw
from strategies.experiments import (
    BayesianTest,
    CupedStats,
    MeanStats,
    ProportionStats,
    RatioStats,
    SequentialTest,
    WelchTest,
    adjust_pvalues,
    cuped_adjust,
    srm_test,
)


def _mean_stats(samples: list[np.ndarray]) -> MeanStats:
    return MeanStats(
        n=[len(s) for s in samples],
        sum=[s.sum() for s in samples],
        sum_squares=[(s * s).sum() for s in samples],
    )


@pytest.fixture
def three_arms() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [
        rng.normal(0.70, 0.15, 400),
        rng.normal(0.73, 0.20, 350),
        rng.normal(0.69, 0.10, 500),
    ]


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_welch_equals_scipy_ttest_ind_from_stats(
    three_arms: list[np.ndarray], alternative: str
) -> None:
    control = _mean_stats([three_arms[0], three_arms[0]]).moments()
    treatment = _mean_stats(three_arms[1:]).moments()
    res = WelchTest(alpha=0.05, alternative=alternative).compute(control, treatment)
    for i, t in enumerate(three_arms[1:]):
        c = three_arms[0]
        ref = sps.ttest_ind_from_stats(
            t.mean(),
            t.std(ddof=1),
            len(t),
            c.mean(),
            c.std(ddof=1),
            len(c),
            equal_var=False,
            alternative=alternative,
        )
        assert res.statistic[i] == pytest.approx(ref.statistic, abs=1e-10)
        assert res.p_value[i] == pytest.approx(ref.pvalue, abs=1e-10)
        raw = sps.ttest_ind(t, c, equal_var=False, alternative=alternative)
        ci = raw.confidence_interval(0.95)
        if alternative != "less":
            assert res.ci_low[i] == pytest.approx(ci.low, abs=1e-10)
        if alternative != "greater":
            assert res.ci_high[i] == pytest.approx(ci.high, abs=1e-10)
        assert res.df[i] == pytest.approx(raw.df, abs=1e-8)


def test_relative_effect_delta_method_matches_independent_computation(
    three_arms: list[np.ndarray],
) -> None:
    c, t = three_arms[0], three_arms[1]
    res = WelchTest().compute(_mean_stats([c]).moments(), _mean_stats([t]).moments())
    mc, mt = c.mean(), t.mean()
    vc, vt = c.var(ddof=1) / len(c), t.var(ddof=1) / len(t)
    # gradient of mt/mc - 1 w.r.t. (mt, mc) is (1/mc, -mt/mc^2)
    se_rel = np.sqrt(vt / mc**2 + vc * mt**2 / mc**4)
    assert res.relative[0] == pytest.approx(mt / mc - 1, abs=1e-12)
    assert res.relative_se[0] == pytest.approx(se_rel, abs=1e-12)


def test_proportions_match_statsmodels_wald() -> None:
    counts = np.array([[120, 1000], [150, 1010], [95, 990]])
    control = ProportionStats(n=[1000, 1000], successes=[120, 120]).moments()
    treatment = ProportionStats(n=[1010, 990], successes=[150, 95]).moments()
    res = WelchTest(alpha=0.05).compute(control, treatment)
    for i, (x, n) in enumerate(counts[1:]):
        ref = sm_prop.test_proportions_2indep(x, n, 120, 1000, method="wald", compare="diff")
        lo, hi = sm_prop.confint_proportions_2indep(x, n, 120, 1000, method="wald", compare="diff")
        assert res.statistic[i] == pytest.approx(ref.statistic, abs=1e-8)
        assert res.p_value[i] == pytest.approx(ref.pvalue, abs=1e-8)
        assert res.ci_low[i] == pytest.approx(lo, abs=1e-8)
        assert res.ci_high[i] == pytest.approx(hi, abs=1e-8)


def test_ratio_metric_matches_delta_method_on_raw_arrays() -> None:
    rng = np.random.default_rng(5)
    arms = []
    for lam, tok in ((3.0, 400.0), (3.0, 430.0)):
        den = rng.poisson(lam, 800) + 1.0  # requests per unit
        num = den * tok + rng.normal(0, 80, 800) * np.sqrt(den)  # tokens per unit
        arms.append((num, den))

    def stats(num: np.ndarray, den: np.ndarray) -> RatioStats:
        return RatioStats(
            n=len(num),
            num_sum=num.sum(),
            num_sum_squares=(num**2).sum(),
            den_sum=den.sum(),
            den_sum_squares=(den**2).sum(),
            sum_products=(num * den).sum(),
        )

    res = WelchTest().compute(stats(*arms[0]).moments(), stats(*arms[1]).moments())

    def ratio_and_var(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
        n = len(num)
        r = num.mean() / den.mean()
        cov = np.cov(num, den, ddof=1)
        grad = np.array([1 / den.mean(), -num.mean() / den.mean() ** 2])
        return r, float(grad @ cov @ grad) / n

    (rc, vc), (rt, vt) = ratio_and_var(*arms[0]), ratio_and_var(*arms[1])
    se = np.sqrt(vc + vt)
    assert res.effect[0] == pytest.approx(rt - rc, abs=1e-8)
    assert res.se[0] == pytest.approx(se, rel=1e-9)
    z = (rt - rc) / se
    assert res.p_value[0] == pytest.approx(2 * sps.norm.sf(abs(z)), abs=1e-10)


def test_cuped_matches_ols_and_reduces_variance() -> None:
    rng = np.random.default_rng(9)
    xs = [rng.normal(0.6, 0.2, 600), rng.normal(0.6, 0.2, 550), rng.normal(0.6, 0.2, 500)]
    ys = [0.8 * x + rng.normal(0.1 + 0.02 * k, 0.08, len(x)) for k, x in enumerate(xs)]

    def stats(x: np.ndarray, y: np.ndarray) -> CupedStats:
        return CupedStats(
            n=len(x),
            sum=y.sum(),
            sum_squares=(y * y).sum(),
            pre_sum=x.sum(),
            pre_sum_squares=(x * x).sum(),
            sum_products=(x * y).sum(),
        )

    control = stack = [stats(xs[0], ys[0])] * 2
    treatment = [stats(xs[1], ys[1]), stats(xs[2], ys[2])]
    c = ex.stack_stats(stack)
    t = ex.stack_stats(treatment)
    assert isinstance(c, CupedStats) and isinstance(t, CupedStats)
    mc, mt, theta = cuped_adjust(c, t)
    for i in (1, 2):
        x = np.concatenate([xs[0], xs[i]])
        y = np.concatenate([ys[0], ys[i]])
        treat = np.r_[np.zeros(len(xs[0])), np.ones(len(xs[i]))]
        design = np.column_stack([np.ones_like(x), treat, x])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        assert (mt.mean[i - 1] - mc.mean[i - 1]) == pytest.approx(coef[1], abs=1e-10)
        assert theta[i - 1] == pytest.approx(coef[2], abs=1e-10)
    assert np.all(ex.variance_reduction(c, t) > 0.5)
    assert len(control) == 2


def test_srm_matches_scipy_chisquare_with_padding() -> None:
    counts = np.array([[5000, 5200, 0], [3300, 3350, 3100]], dtype=float)
    weights = np.array([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    res = srm_test(counts, weights)
    ref0 = sps.chisquare([5000, 5200], [5100, 5100])
    ref1 = sps.chisquare(counts[1])
    assert res.p_value[0] == pytest.approx(ref0.pvalue, abs=1e-12)
    assert res.p_value[1] == pytest.approx(ref1.pvalue, abs=1e-12)
    assert res.statistic[1] == pytest.approx(ref1.statistic, abs=1e-10)
    assert res.mismatch.tolist() == [False, ref1.pvalue < 0.001]
    bad = srm_test([[10000, 10600]], [[0.5, 0.5]])
    assert bool(bad.mismatch[0]) and bad.p_value[0] < 0.001


@pytest.mark.parametrize(("ours", "theirs"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_multiple_testing_matches_statsmodels(ours: str, theirs: str) -> None:
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.uniform(0, 0.05, 6), rng.uniform(0, 1, 14)])
    ref = multipletests(p, alpha=0.05, method=theirs)[1]
    assert adjust_pvalues(p, method=ours) == pytest.approx(ref, abs=1e-12)
    rows = np.stack([p, p[::-1]])
    both = adjust_pvalues(rows, method=ours)
    assert both[1] == pytest.approx(multipletests(p[::-1], method=theirs)[1], abs=1e-12)
    with_nan = adjust_pvalues(np.r_[p[:5], np.nan], method=ours)
    assert np.isnan(with_nan[-1])
    assert with_nan[:5] == pytest.approx(multipletests(p[:5], method=theirs)[1], abs=1e-12)


def test_power_and_sample_size_match_statsmodels() -> None:
    sd, effect = 0.2, 0.02
    d = effect / sd
    for n in (200.0, 1500.0, 6000.0):
        ours = pw.detection_power(effect, sd**2, sd**2, n, alpha=0.05)
        assert ours[0] == pytest.approx(NormalIndPower().power(d, n, 0.05, ratio=1.0), abs=1e-10)
        one = pw.detection_power(effect, sd**2, sd**2, n, alpha=0.05, alternative="greater")
        ref = NormalIndPower().power(d, n, 0.05, ratio=1.0, alternative="larger")
        assert one[0] == pytest.approx(ref, abs=1e-10)
    n_req = pw.required_n(sd**2, sd**2, effect, alpha=0.05, power=0.8)[0]
    ref_n = NormalIndPower().solve_power(d, alpha=0.05, power=0.8, ratio=1.0)
    assert n_req == pytest.approx(ref_n, rel=1e-6)
    t_n = TTestIndPower().solve_power(d, alpha=0.05, power=0.8, ratio=1.0)
    assert n_req == pytest.approx(t_n, rel=0.01)  # t vs normal: within 1% at this size
    mde = pw.minimum_detectable_effect(sd**2, sd**2, n_req, alpha=0.05, power=0.8)
    assert mde[0] == pytest.approx(effect, rel=1e-9)
    # unequal allocation: statsmodels' ratio is nobs2 / nobs1
    n2 = pw.required_n(sd**2, sd**2, effect, ratio=2.0)[0]
    assert n2 == pytest.approx(
        NormalIndPower().solve_power(d, alpha=0.05, power=0.8, ratio=2.0), rel=1e-6
    )
    assert pw.days_needed([100.0, 50.0], [40.0, 60.0], [10.0, 10.0]).tolist() == [6.0, 0.0]


def test_sequential_closed_form_against_direct_mixture_integral() -> None:
    c = MeanStats(n=[2000], sum=[1400.0], sum_squares=[1030.0]).moments()
    t = MeanStats(n=[2100], sum=[1510.0], sum_squares=[1140.0]).moments()
    seq = SequentialTest(alpha=0.05, n_star=5000)
    res = seq.compute(c, t)
    var = c.se2[0] + t.se2[0]
    tau2 = seq.tau2(c, t)[0]
    d = res.effect[0]
    # Lambda(0) = integral of N(d; theta, V) / N(d; 0, V) over theta ~ N(0, tau2)
    theta = np.linspace(-12 * np.sqrt(tau2), 12 * np.sqrt(tau2), 200_001)
    lr = sps.norm.pdf(d, theta, np.sqrt(var)) / sps.norm.pdf(d, 0, np.sqrt(var))
    integral = np.trapezoid(lr * sps.norm.pdf(theta, 0, np.sqrt(tau2)), theta)
    assert res.p_value[0] == pytest.approx(min(1.0, 1 / integral), rel=1e-6)
    # the CS boundary is exactly where Lambda(theta0) = 1 / alpha
    for edge in (res.ci_low[0], res.ci_high[0]):
        log_lr = ex.sequential.log_mixture_lr(np.array(d - edge), np.array(var), np.array(tau2))
        assert float(log_lr) == pytest.approx(np.log(1 / 0.05), abs=1e-9)
    # wider than the fixed-horizon interval at every sample size
    fixed = WelchTest(alpha=0.05).compute(c, t)
    assert res.ci_high[0] - res.ci_low[0] > fixed.ci_high[0] - fixed.ci_low[0]
    r_star = ex.sequential.optimal_mixing_ratio(0.05)
    assert r_star == pytest.approx(np.log1p(r_star) + 2 * np.log(20), abs=1e-10)


def test_bayesian_closed_form_against_numeric_integration() -> None:
    c = MeanStats(n=[500], sum=[350.0], sum_squares=[260.0]).moments()
    t = MeanStats(n=[480], sum=[345.0], sum_squares=[258.0]).moments()
    flat = BayesianTest().compute(c, t)
    d, se = flat.effect[0], flat.se[0]
    assert flat.chance_to_win[0] == pytest.approx(sps.norm.sf(0, d, se), abs=1e-12)
    grid = np.linspace(d - 12 * se, d + 12 * se, 400_001)
    density = sps.norm.pdf(grid, d, se)
    loss = np.trapezoid(np.maximum(0.0, -grid) * density, grid)
    assert flat.expected_loss[0] == pytest.approx(loss, abs=1e-9)
    loss_low = np.trapezoid(np.maximum(0.0, grid) * density, grid)
    assert flat.expected_loss_lower[0] == pytest.approx(loss_low, abs=1e-9)
    prior = BayesianTest(prior_mean=0.0, prior_sd=0.01).compute(c, t)
    post_var = 1 / (1 / se**2 + 1 / 0.01**2)
    post_mean = post_var * d / se**2
    assert prior.chance_to_win[0] == pytest.approx(sps.norm.sf(0, post_mean, np.sqrt(post_var)))
    assert abs(post_mean) < abs(d)  # the prior shrinks towards 0
    mc1 = BayesianTest(draws=20_000, seed=4).compute(c, t).chance_to_win[0]
    mc2 = BayesianTest(draws=20_000, seed=4).compute(c, t).chance_to_win[0]
    assert mc1 == mc2
    assert mc1 == pytest.approx(flat.chance_to_win[0], abs=0.02)
    rel = BayesianTest(scale="relative").compute(c, t)
    assert rel.chance_to_win[0] == pytest.approx(
        sps.norm.sf(0, flat.relative[0], flat.relative_se[0]), abs=1e-12
    )


def test_degenerate_inputs_say_cannot_analyse_without_nan_decisions() -> None:
    control = MeanStats(n=[1, 10, 10, 10], sum=[1.0, 5.0, 0.0, np.nan], sum_squares=[1, 2.5, 1, 1])
    treatment = MeanStats(n=[10, 10, 10, 10], sum=[5.0, 5.0, 3.0, 5.0], sum_squares=[3, 2.5, 1, 3])
    for test in (WelchTest(), SequentialTest(), BayesianTest()):
        res = test.compute(control.moments(), treatment.moments())
        assert res.ok.tolist() == [False, False, True, False]
        assert res.message[0] == ex.effects.MSG_SMALL
        assert res.message[1] == ex.effects.MSG_ZERO_VAR
        assert res.message[2] == ex.effects.MSG_ZERO_CONTROL
        assert res.message[3] == ex.effects.MSG_NONFINITE
        assert not res.relative_ok[2] and np.isnan(res.relative[2])
        assert np.isfinite(res.effect[2])
        assert np.all(np.isnan(res.p_value[:2]))
    with pytest.raises(ValueError, match="successes"):
        ProportionStats(n=[10], successes=[11])
    srm = srm_test([[100.0, 0.0]], [[1.0, 0.0]])
    assert not srm.ok[0] and "fewer than 2 arms" in srm.message[0]


@pytest.mark.parametrize(
    "module",
    ["stats", "cuped", "frequentist", "sequential", "bayesian", "srm", "multiple_testing", "power"],
)
def test_docstring_examples_run(module: str) -> None:
    import importlib

    mod = importlib.import_module(f"strategies.experiments.{module}")
    result = doctest.testmod(mod, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- issue 14: new outputs


def test_sequential_srm_bayes_factor_matches_scipy_dirichlet_multinomial() -> None:
    weights = np.array([0.25, 0.25, 0.5])
    for counts in ([480, 530, 990], [120, 80, 200], [5000, 5600, 10000]):
        x = np.array(counts)
        ref = sps.dirichlet_multinomial(100 * weights, x.sum()).logpmf(x) - sps.multinomial(
            x.sum(), weights
        ).logpmf(x)
        got = ex.sequential_srm_test([x], [weights], alpha=0.001)
        assert got.statistic[0] == pytest.approx(ref, rel=1e-10)
        assert got.p_value[0] == pytest.approx(min(1.0, np.exp(-ref)), rel=1e-10)
    # a gross mismatch is found; the chi-square p of the same counts is smaller (it is one look)
    gross = ex.sequential_srm_test([[5000, 5600, 10000]], [weights])
    assert bool(gross.mismatch[0])
    assert srm_test([[5000, 5600, 10000]], [weights]).p_value[0] < gross.p_value[0]


def _delta_relative(t: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """Relative lift and its delta-method standard error from raw samples."""
    mt, mc = t.mean(), c.mean()
    vt, vc = t.var(ddof=1) / len(t), c.var(ddof=1) / len(c)
    return (mt - mc) / mc, float(np.sqrt(vt / mc**2 + mt**2 * vc / mc**4))


def test_relative_p_values_match_the_delta_method_and_holm_runs_on_them() -> None:
    rng = np.random.default_rng(11)
    control = rng.normal(0.70, 0.2, 800)
    arms = [rng.normal(0.70 + lift, 0.25, 900) for lift in (0.03, 0.0, 0.015)]
    c = _mean_stats([control] * 3).moments()
    t = _mean_stats(arms).moments()
    fixed = WelchTest(alpha=0.05).compute(c, t)
    for i, arm in enumerate(arms):
        rel, se = _delta_relative(arm, control)
        df = fixed.df[i]
        assert fixed.relative[i] == pytest.approx(rel, rel=1e-12)
        assert fixed.relative_p_value[i] == pytest.approx(2 * sps.t.sf(abs(rel / se), df))
        # the relative p is below alpha exactly when the relative interval excludes 0
        excludes = fixed.relative_ci_low[i] > 0 or fixed.relative_ci_high[i] < 0
        assert (fixed.relative_p_value[i] < 0.05) == excludes
    seq = SequentialTest(alpha=0.05, n_star=2000).compute(c, t)
    for i in range(3):
        excludes = seq.relative_ci_low[i] > 0 or seq.relative_ci_high[i] < 0
        assert (seq.relative_p_value[i] < 0.05) == excludes
        assert seq.relative_p_value[i] >= fixed.relative_p_value[i]  # always-valid is wider
    spec = ex.ExperimentSpec(
        experiment_id="e", method="fixed", correction="holm", correction_scale="relative"
    )
    data = ex.MetricData(
        metric="quality", kind="mean", arms=("control", "a", "b", "c"),
        stats=tuple(_mean_stats([x]) for x in [control, *arms]),
    )  # fmt: skip
    report = ex.analyze_experiment(spec, [data], unit_counts={})
    holm = multipletests(fixed.relative_p_value, method="holm")[1]
    assert [cmp.p_adjusted for cmp in report.comparisons] == pytest.approx(holm, rel=1e-10)
    assert [cmp.relative_p_value for cmp in report.comparisons] == pytest.approx(
        fixed.relative_p_value, rel=1e-12
    )


def _cuped_stats(y: np.ndarray, x: np.ndarray) -> CupedStats:
    return CupedStats(
        n=[len(y)], sum=[y.sum()], sum_squares=[(y * y).sum()], pre_sum=[x.sum()],
        pre_sum_squares=[(x * x).sum()], sum_products=[(x * y).sum()],
    )  # fmt: skip


@pytest.mark.slow
def test_cuped_relative_lift_divides_by_the_observed_control_mean_and_covers() -> None:
    rng = np.random.default_rng(5)
    true_rel, reps, hits = 0.04, 600, 0
    for k in range(reps):
        xc, xt = rng.normal(1.0, 0.3, 400), rng.normal(1.0, 0.3, 400)
        yc = 0.5 + 0.8 * xc + rng.normal(0, 0.1, 400)
        yt = (0.5 + 0.8 * xt + rng.normal(0, 0.1, 400)) * (1 + true_rel)
        spec = ex.ExperimentSpec(experiment_id="e", primary="y", method="fixed")
        data = ex.MetricData(
            metric="y", kind="cuped", arms=("control", "t"),
            stats=(_cuped_stats(yc, xc), _cuped_stats(yt, xt)),
        )  # fmt: skip
        (cmp,) = ex.analyze_experiment(spec, [data], unit_counts={}).comparisons
        hits += cmp.relative_ci_low <= true_rel <= cmp.relative_ci_high
        if k == 0:
            assert cmp.relative == pytest.approx(cmp.effect / yc.mean(), rel=1e-12)
            raw = WelchTest().compute(_mean_stats([yc]).moments(), _mean_stats([yt]).moments())
            assert cmp.extra["unadjusted_effect"] == pytest.approx(raw.effect[0], rel=1e-12)
            assert cmp.extra["unadjusted_p_value"] == pytest.approx(raw.p_value[0], rel=1e-10)
            assert cmp.ci_high - cmp.ci_low < raw.ci_high[0] - raw.ci_low[0]  # CUPED narrower
    coverage = hits / reps
    assert abs(coverage - 0.95) <= 3 * np.sqrt(0.95 * 0.05 / reps), coverage


def test_bayesian_prior_scale_is_wired_through_the_spec() -> None:
    c = ProportionStats(n=[2000], successes=[200])
    t = ProportionStats(n=[2000], successes=[240])
    data = ex.MetricData(metric="m", kind="proportion", arms=("control", "t"), stats=(c, t))
    wins = {}
    for scale in ("absolute", "relative"):
        spec = ex.ExperimentSpec(
            experiment_id="e", primary="m", method="bayesian", prior_sd=0.05, prior_scale=scale
        )
        (cmp,) = ex.analyze_experiment(spec, [data], unit_counts={}).comparisons
        direct = BayesianTest(prior_sd=0.05, scale=scale).compute(c.moments(), t.moments())
        assert cmp.chance_to_win == pytest.approx(direct.chance_to_win[0], rel=1e-12)
        wins[scale] = cmp.chance_to_win
    # sd 0.05 is tight for a relative lift of 20% and loose for an absolute 0.02
    assert wins["relative"] < wins["absolute"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_star", float("inf")), ("n_star", float("nan")), ("mde", float("inf")),
     ("prior_mean", float("nan")), ("correction_scale", "log"), ("prior_scale", "odds")],
)  # fmt: skip
def test_spec_rejects_non_finite_and_unknown_options(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ex.ExperimentSpec(experiment_id="e", **{field: value})  # type: ignore[arg-type]
