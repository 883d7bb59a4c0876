"""Nightly looks on the warehouse: sticky stops with an audited reset, the always-valid SRM
test, fixed decides once at its horizon, bayesian is refused; the text table stays readable."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from flows.cli import main
from flows.experiment_commands import format_table
from tasks.experiments import (
    ExperimentResetError,
    active_stop,
    analyze_warehouse_experiments,
    reset_stop,
)
from tasks.simulation import load_simulated

START = dt.date(2026, 10, 1)


def _rows(
    *, seed: int, days: int, first_day: int = 0, share: float = 0.5, per_day: int = 300,
    lift: float = 0.0, unit_offset: int = 0,
) -> pa.Table:  # fmt: skip
    """One request per unit (a new unit each), ``share`` of them in treatment."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    treat = rng.random(n) < share
    day = np.repeat(np.arange(first_day, first_day + days), per_day)
    ts = np.datetime64(START.isoformat()) + day.astype("timedelta64[D]") + np.timedelta64(12, "h")
    return pa.table(
        {
            "request_id": [f"r{seed}-{i}" for i in range(n)],
            "timestamp": pa.array(ts.astype("datetime64[us]")).cast(pa.timestamp("us", tz="UTC")),
            "use_case": ["my-summaries"] * n,
            "model": ["gpt-4o-mini"] * n,
            "experiment_id": ["exp-mine"] * n,
            "variant_id": np.where(treat, "treatment", "control").tolist(),
            "unit_id": [f"u{unit_offset + i}" for i in range(n)],
            "input_tokens": rng.integers(100, 300, n),
            "output_tokens": rng.integers(50, 150, n),
            "latency_ms": rng.gamma(4.0, 250.0, n),
            "cost_usd": rng.gamma(4.0, 0.0005, n),
            "status": ["success"] * n,
            "quality": np.clip(rng.normal(0.7 + lift * treat, 0.1), 0, 1),
            "metadata": ["{}"] * n,
        }
    )


def _config(**defaults: Any) -> dict[str, Any]:
    base = {"method": "sequential", "primary": "quality", "min_days": 1, "max_days": 28}
    return {
        "defaults": {**base, **defaults},
        "experiments": {"exp-mine": {"weights": {"control": 0.5, "treatment": 0.5}}},
    }


def _night(con: Any, config: dict[str, Any], day: int, run: str = "") -> Any:
    as_of = START + dt.timedelta(days=day)
    (report,) = analyze_warehouse_experiments(
        con, config, as_of=as_of, run_id=run or f"night-{day}"
    )
    return report


def test_srm_stop_sticks_until_a_person_resets_it(warehouse: Any) -> None:
    load_simulated(warehouse, _rows(seed=1, days=6, share=0.42), label="t")
    first = _night(warehouse, _config(), 5)
    assert first.decision.action == "stop: SRM" and first.srm.method == "sequential"
    assert first.decision.since is None  # decided tonight
    # the weights are "fixed" in config: tonight alone would run on, but the stop holds
    fixed = _config()
    fixed["experiments"]["exp-mine"]["weights"] = {"control": 0.58, "treatment": 0.42}
    later = _night(warehouse, fixed, 5, run="night-5-rerun")
    assert later.decision.action == "stop: SRM" and later.decision.since == "2026-10-06"
    assert "llmopt experiments reset exp-mine" in later.decision.reasons[0]
    assert later.decision.reasons[-1].startswith("tonight's analysis alone: ")
    assert "stop" not in later.decision.reasons[-1]
    stops = warehouse.execute("SELECT count(*) FROM experiment_stops").fetchone()
    assert stops == (1,)  # re-running the same night records nothing new
    with pytest.raises(ExperimentResetError, match="needs a reason"):
        reset_stop(warehouse, "exp-mine", reason="  ")
    done = reset_stop(warehouse, "exp-mine", reason="bot filter fixed", by="ana")
    assert done["reset"] == [{"action": "stop: SRM", "stopped_on": "2026-10-06"}]
    assert done["srm_restarts_after"] == "2026-10-06"
    assert sum(done["units_baseline"].values()) == 6 * 300
    assert active_stop(warehouse, "exp-mine", as_of=START + dt.timedelta(days=9)) is None
    with pytest.raises(ExperimentResetError, match="no stop in force"):
        reset_stop(warehouse, "exp-mine", reason="again")
    # balanced traffic after the reset: the SRM test restarts on the new units only
    load_simulated(warehouse, _rows(seed=2, days=4, first_day=6, unit_offset=10**6), label="t2")
    after = _night(warehouse, _config(), 9)
    assert after.decision.action == "keep running", after.decision.reasons
    assert sum(after.srm.counts.values()) == 4 * 300
    audit = warehouse.execute(
        "SELECT action, reset_by, reset_reason, reset_on FROM experiment_stops"
    ).fetchall()
    assert audit == [("stop: SRM", "ana", "bot filter fixed", START + dt.timedelta(days=5))]


def test_harm_stop_sticks_and_a_backfilled_earlier_night_is_not_stopped(warehouse: Any) -> None:
    load_simulated(warehouse, _rows(seed=3, days=10, lift=-0.02), label="t")
    assert _night(warehouse, _config(), 0).decision.action == "keep running"
    stopped = _night(warehouse, _config(), 9)
    assert stopped.decision.action == "stop: harm" and stopped.decision.variant == "treatment"
    # the stop applies from its night on, not to a backfill of an earlier night
    assert _night(warehouse, _config(), 0, run="backfill").decision.action == "keep running"
    again = _night(warehouse, _config(), 9, run="again")
    assert again.decision.since == "2026-10-10" and again.decision.variant == "treatment"


def test_fixed_decides_once_at_its_horizon_with_the_data_up_to_it(warehouse: Any) -> None:
    load_simulated(warehouse, _rows(seed=4, days=20, lift=0.03), label="t")
    config = _config(method="fixed", max_days=10)
    early = _night(warehouse, config, 6)
    assert early.decision.action == "keep running"
    assert "fixed horizon" in early.decision.reasons[0]
    assert early.decision.days_needed == 3.0
    at = _night(warehouse, config, 9)
    late = _night(warehouse, config, 19)
    assert at.decision.label == late.decision.label == "ship treatment"
    quality = (at.comparison("quality", "treatment"), late.comparison("quality", "treatment"))
    assert quality[0].n_control == quality[1].n_control  # day 20 repeats the day-10 look
    assert quality[0].p_value == pytest.approx(quality[1].p_value, rel=1e-9)
    assert any("fixed horizon" in note for note in late.notes)


def test_bayesian_and_fixed_without_horizon_are_refused_for_nightly_looks(warehouse: Any) -> None:
    load_simulated(warehouse, _rows(seed=5, days=8, lift=0.05), label="t")
    bayes = _night(warehouse, _config(method="bayesian"), 7)
    assert bayes.decision.action == "cannot analyse"
    assert 'method "bayesian" is refused for nightly looks' in bayes.decision.reasons[0]
    assert bayes.comparison("quality", "treatment").chance_to_win > 0.99  # numbers still shown
    fixed = _night(warehouse, _config(method="fixed", max_days=None), 7)
    assert fixed.decision.action == "cannot analyse"
    assert "needs max_days" in fixed.decision.reasons[0]


def test_reset_command_prints_one_line_and_is_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPT_HOME", str(tmp_path))
    from tasks.core.settings import load_settings
    from tasks.warehouse.connection import connect

    con = connect(load_settings())
    load_simulated(con, _rows(seed=6, days=6, share=0.40), label="t")
    assert _night(con, _config(), 5).decision.action == "stop: SRM"
    con.close()
    with pytest.raises(SystemExit) as usage:  # --reason is required
        main(["experiments", "reset", "exp-mine"])
    assert usage.value.code == 2 and "--reason" in capsys.readouterr().err
    code = main(["experiments", "reset", "exp-mine", "--reason", "fixed", "--by", "bo", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out)["by"] == "bo"
    code = main(["experiments", "reset", "exp-mine", "--reason", "fixed"])
    _, err = capsys.readouterr()
    assert code == 1 and err.strip() == (
        "llmopt: error: experiment 'exp-mine' has no stop in force to reset"
    )


def test_text_table_columns_never_touch() -> None:
    rows = [["quality", "0.0067611", "1.35e+03"], ["cost_usd", "-123456789", "x"]]
    lines = format_table(["metric", "effect", "n"], rows, [False, True, True])
    assert lines[2].split() == ["quality", "0.0067611", "1.35e+03"]
    assert lines[3].split() == ["cost_usd", "-123456789", "x"]
    widths = [len(x) for x in lines[1].split("  ")]
    assert widths == [8, 10, 8]  # each column as wide as its widest cell


def test_config_rejects_non_finite_and_unknown_scales_naming_the_key() -> None:
    from tasks.core.config import ConfigError
    from tasks.experiments import experiment_spec

    for key, value in (("n_star", float("inf")), ("prior_scale", "odds"), ("mde", float("nan"))):
        with pytest.raises(ConfigError, match=key):
            experiment_spec("exp-mine", {"defaults": {key: value}})
    spec = experiment_spec(
        "exp-mine",
        {"defaults": {"prior_scale": "relative", "correction_scale": "relative", "prior_sd": 0.1}},
    )
    assert spec is not None
    assert (spec.prior_scale, spec.correction_scale, spec.prior_sd) == ("relative", "relative", 0.1)
