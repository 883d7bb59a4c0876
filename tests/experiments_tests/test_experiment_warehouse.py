"""Warehouse side: SQL sufficient statistics per unit, stored decisions, the simulated world."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tasks.core.config import load_config
from tasks.core.settings import Settings
from tasks.experiments.analyze import (
    analyze_experiments,
    experiment_spec,
    plot_experiment_intervals,
)
from tasks.simulation import load_simulated

START = dt.date(2026, 10, 1)


def _insert(con: Any, table: pa.Table) -> None:
    """Load canonical records into usage_logs (timestamp -> ts, day), as ingestion would."""
    load_simulated(con, table, label="test")


def _synthetic(
    *,
    seed: int,
    days: int = 14,
    per_day: int = 400,
    share_treatment: float = 0.5,
    quality_lift: float = 0.0,
    error_treatment: float = 0.02,
    units: int = 3000,
) -> pa.Table:
    """Unit-randomized rows: heavy users make many calls and carry a per-user quality effect."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    unit = np.floor(units * rng.random(n) ** 1.5).astype(int)
    unit_rng = np.random.default_rng(seed + 1)
    in_treatment = unit_rng.random(units) < share_treatment
    user_effect = unit_rng.uniform(-0.08, 0.08, units)
    treat = in_treatment[unit]
    day = np.repeat(np.arange(days), per_day)
    ts = (
        pd.Timestamp(START, tz="UTC")
        + pd.to_timedelta(day, "D")
        + pd.to_timedelta(rng.integers(0, 86_400, n), "s")
    )
    failed = rng.random(n) < np.where(treat, error_treatment, 0.02)
    quality = np.clip(0.7 + user_effect[unit] + quality_lift * treat + rng.normal(0, 0.1, n), 0, 1)
    feedback = rng.choice([-1, 0, 1], n, p=[0.2, 0.5, 0.3]).astype(float)
    feedback[rng.random(n) < 0.7] = np.nan
    return pa.table(
        {
            "request_id": [f"r{seed}-{i}" for i in range(n)],
            "timestamp": pa.array(ts.to_numpy(), pa.timestamp("us", tz="UTC")),
            "use_case": ["support-summarize"] * n,
            "model": ["gpt-4o-mini"] * n,
            "experiment_id": ["exp-synth"] * n,
            "variant_id": np.where(treat, "treatment", "control").tolist(),
            "unit_id": [f"u{u}" for u in unit],
            "input_tokens": rng.integers(100, 300, n),
            "output_tokens": np.where(failed, 0, rng.integers(50, 150, n)),
            "latency_ms": rng.gamma(4.0, 250.0, n),
            "cost_usd": rng.gamma(4.0, 0.0005, n),
            "status": np.where(failed, "error", "success").tolist(),
            "quality": pa.array(np.where(failed, np.nan, quality), mask=failed),
            "feedback": pa.array(feedback, mask=np.isnan(feedback)).cast(pa.int8()),
            "metadata": ["{}"] * n,
        }
    )


CONFIG: dict[str, Any] = {
    "defaults": {
        "method": "sequential",
        "alpha": 0.05,
        "min_days": 3,
        "max_days": 28,
        "primary": "quality",
        "secondary": ["positive_feedback"],
        "guardrails": [
            {"metric": "error_rate", "margin": 0.01, "relative": False},
            {"metric": "latency_ms", "margin": 0.10},
        ],
    },
    "experiments": {"exp-synth": {"weights": {"control": 0.5, "treatment": 0.5}}},
}


def test_sql_statistics_are_per_unit_and_cumulative(warehouse: Any) -> None:
    table = _synthetic(seed=1, days=5, per_day=300)
    _insert(warehouse, table)
    as_of = START + dt.timedelta(days=3)
    analyze_experiments(warehouse, CONFIG, as_of=as_of, run_id="r1")
    stored = warehouse.execute(
        "SELECT variant_id, metric, look_day, n, num_sum, num_sum_squares, den_sum, "
        "den_sum_squares, sum_products FROM experiment_stats WHERE run_id = 'r1'"
    ).df()
    # independent computation with pandas from the raw rows
    frame = table.to_pandas()
    frame["day"] = frame["timestamp"].dt.tz_convert("UTC").dt.date
    for look in (START + dt.timedelta(days=1), as_of):
        rows = frame[frame["day"] <= look]
        per_unit = rows.groupby(["variant_id", "unit_id"]).agg(
            num=("quality", "sum"), den=("quality", "count")
        )
        per_unit = per_unit[per_unit["den"] > 0]
        for variant, grp in per_unit.groupby(level=0):
            got = stored[
                (stored.variant_id == variant)
                & (stored.metric == "quality")
                & (stored.look_day == pd.Timestamp(look))
            ].iloc[0]
            assert got.n == len(grp)
            assert got.num_sum == pytest.approx(grp["num"].sum(), rel=1e-12)
            assert got.num_sum_squares == pytest.approx((grp["num"] ** 2).sum(), rel=1e-12)
            assert got.den_sum_squares == pytest.approx((grp["den"] ** 2).sum(), rel=1e-12)
            assert got.sum_products == pytest.approx((grp["num"] * grp["den"]).sum(), rel=1e-12)
    assert stored.look_day.max() == pd.Timestamp(as_of)  # nothing after as_of


def test_decisions_are_stored_idempotently_per_run_and_date(warehouse: Any) -> None:
    _insert(warehouse, _synthetic(seed=2, days=6, per_day=200))
    as_of = START + dt.timedelta(days=5)
    first = analyze_experiments(warehouse, CONFIG, as_of=as_of, run_id="nightly-1")
    again = analyze_experiments(warehouse, CONFIG, as_of=as_of, run_id="nightly-1")
    # same decision; numbers equal up to DuckDB's parallel floating-point summation order
    assert first[0].decision == again[0].decision
    for a, b in zip(first[0].comparisons, again[0].comparisons, strict=True):
        assert (a.metric, a.variant, a.verdict) == (b.metric, b.variant, b.verdict)
        assert a.effect == pytest.approx(b.effect, rel=1e-9, abs=1e-15)
        assert a.p_value == pytest.approx(b.p_value, rel=1e-9, nan_ok=True)
    counts = warehouse.execute(
        "SELECT (SELECT count(*) FROM experiment_decisions), (SELECT count(*) FROM "
        "experiment_results WHERE run_id = 'nightly-1')"
    ).fetchone()
    assert counts[0] == 1
    assert counts[1] == len(first[0].comparisons)
    analyze_experiments(warehouse, CONFIG, as_of=as_of, run_id="nightly-2")
    stored = warehouse.execute(
        "SELECT run_id, action, srm_p_value, days_elapsed, json_extract_string(report, "
        "'$.experiment_id') FROM experiment_decisions ORDER BY run_id"
    ).fetchall()
    assert [s[0] for s in stored] == ["nightly-1", "nightly-2"]
    assert stored[0][1] == first[0].decision.action
    assert stored[0][2] == pytest.approx(first[0].srm.p_value)
    assert stored[0][3] == 6 and stored[0][4] == "exp-synth"


def test_sample_ratio_mismatch_stops_before_any_decision(warehouse: Any) -> None:
    _insert(warehouse, _synthetic(seed=3, share_treatment=0.42, quality_lift=0.05))
    (report,) = analyze_experiments(warehouse, CONFIG, run_id="r", store=False)
    assert report.decision.action == "stop: SRM"
    assert report.srm.p_value < 0.001
    assert "sample ratio mismatch" in report.decision.reasons[0]


def test_guardrail_harm_stops_the_experiment(warehouse: Any) -> None:
    _insert(warehouse, _synthetic(seed=4, quality_lift=0.03, error_treatment=0.08))
    (report,) = analyze_experiments(warehouse, CONFIG, run_id="r", store=False)
    assert report.decision.action == "stop: harm"
    assert report.decision.variant == "treatment"
    err = report.comparison("error_rate", "treatment")
    assert err.verdict == "harm" and err.ci_low > 0.01
    assert any("error_rate" in r for r in report.decision.reasons)


def test_clean_winner_ships_and_plot_is_written(warehouse: Any, tmp_path: Path) -> None:
    _insert(warehouse, _synthetic(seed=5, quality_lift=0.03, per_day=1200))
    (report,) = analyze_experiments(warehouse, CONFIG, run_id="r", store=False)
    assert report.decision.label == "ship treatment", report.decision.reasons
    quality = report.comparison("quality", "treatment")
    assert quality.kind == "ratio"  # units make several calls: delta method per unit
    assert quality.ci_low > 0 and quality.p_adjusted < 0.05
    latency = report.comparison("latency_ms", "treatment")
    assert latency.p95_control is not None and latency.p95_control > latency.mean_control
    png = plot_experiment_intervals([report], tmp_path / "plots" / "intervals.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_config_file_loads_and_rejects_bad_keys(settings: Settings) -> None:
    config = load_config("experiments", settings)
    spec = experiment_spec("exp-summarize-prompt-v2", config)
    assert spec is not None and spec.method == "sequential" and spec.primary == "quality"
    assert dict(spec.weights) == {"control": 0.5, "treatment": 0.5}
    assert {g.metric for g in spec.guardrails} >= {"error_rate", "cost_usd", "latency_ms"}
    from tasks.core.config import ConfigError

    with pytest.raises(ConfigError, match="unknown key 'alpah'"):
        experiment_spec("x", {"defaults": {"alpah": 0.1}})
    with pytest.raises(ConfigError, match="unknown metric"):
        experiment_spec("x", {"defaults": {"primary": "happiness"}})
    with pytest.raises(ConfigError, match="method"):
        experiment_spec("x", {"defaults": {"method": "peeking"}})
    assert experiment_spec("x", {"experiments": {"x": {"enabled": False}}}) is None


def test_simulated_world_ships_the_real_lift_and_not_the_aa(
    warehouse: Any, settings: Settings
) -> None:
    simulator = pytest.importorskip("tasks.simulation")
    spec = simulator.SimulationSpec(
        days=30,
        requests_per_day={"support-summarize": 1000, "ticket-classify": 1000},
        include_cost=True,
    )
    _insert(warehouse, simulator.simulate(spec))
    truth = simulator.ground_truth(spec)
    config = load_config("experiments", settings)
    decisions: dict[str, list[str]] = {}
    for day in (10, 20, 30):
        as_of = START + dt.timedelta(days=day - 1)
        for rep in analyze_experiments(warehouse, config, as_of=as_of, run_id=f"sim-{day}"):
            decisions.setdefault(rep.experiment_id, []).append(rep.decision.label)
            if rep.experiment_id == "exp-summarize-prompt-v2":
                q = rep.comparison("quality", "treatment")
                assert q.ci_low <= truth.experiment(rep.experiment_id).true_absolute_lift
                assert q.ci_high >= truth.experiment(rep.experiment_id).true_absolute_lift
    assert decisions["exp-summarize-prompt-v2"][-1] == "ship treatment"
    assert not any(label.startswith("ship") for label in decisions["exp-classify-aa"])
    assert decisions["exp-classify-aa"][-1] == "inconclusive at max duration"
