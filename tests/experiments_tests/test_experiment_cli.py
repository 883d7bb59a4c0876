"""``llmopt stats FILE`` and ``llmopt experiments analyze``: numbers, JSON keys, clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from flows.cli import main
from tasks.core.settings import REPO_ROOT

HEADER = "experiment,metric,kind,variant,n,sum,sum_squares,weight\n"


def _write(tmp_path: Path, text: str, name: str = "stats.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _arm(rng: np.random.Generator, mean: float, n: int) -> tuple[int, float, float, np.ndarray]:
    x = rng.normal(mean, 0.2, n)
    return n, float(x.sum()), float((x * x).sum()), x


def test_stats_csv_three_arms_fixed_matches_scipy_and_holm(tmp_path: Path, run_cli: Any) -> None:
    rng = np.random.default_rng(1)
    arms = {"control": _arm(rng, 0.70, 900), "b": _arm(rng, 0.74, 950), "c": _arm(rng, 0.705, 880)}
    lines = [f"exp,quality,mean,{v},{n},{s!r},{ss!r},\n" for v, (n, s, ss, _) in arms.items()]
    path = _write(tmp_path, HEADER + "".join(lines))
    code, out, _ = run_cli("stats", str(path), "--json", "--method", "fixed")
    assert code == 0
    (report,) = json.loads(out)["experiments"]
    control = arms["control"][3]
    raw = []
    for c in report["comparisons"]:
        t = arms[c["variant"]][3]
        ref = sps.ttest_ind(t, control, equal_var=False)
        assert c["p_value"] == pytest.approx(ref.pvalue, abs=1e-10)
        ci = ref.confidence_interval(0.95)
        assert c["ci_low"] == pytest.approx(ci.low, abs=1e-10)
        assert c["ci_high"] == pytest.approx(ci.high, abs=1e-10)
        raw.append(c["p_value"])
    adjusted = multipletests(raw, method="holm")[1]
    assert [c["p_adjusted"] for c in report["comparisons"]] == pytest.approx(adjusted, abs=1e-12)
    assert report["decision"]["label"] == "ship b"
    assert set(report) >= {"experiment_id", "decision", "srm", "comparisons", "method", "notes"}
    assert set(report["comparisons"][0]) >= {
        "effect", "ci_low", "ci_high", "relative", "relative_ci_low", "relative_ci_high",
        "p_value", "p_adjusted", "chance_to_win", "expected_loss", "verdict", "analysable",
    }  # fmt: skip


def test_stats_csv_human_output_ratio_cuped_and_bayesian(tmp_path: Path, run_cli: Any) -> None:
    text = (
        "experiment,metric,kind,variant,n,sum,sum_squares,den_sum,den_sum_squares,"
        "sum_products,pre_sum,pre_sum_squares,pre_sum_products\n"
        "e,tokens,ratio,control,500,200000,1.0e8,1500,5000,650000,,,\n"
        "e,tokens,ratio,new,520,214000,1.1e8,1560,5200,700000,,,\n"
        "e,quality,mean,control,500,350,260,,,,340,250,245\n"
        "e,quality,mean,new,520,380,292,,,,350,256,262\n"
    )
    path = _write(tmp_path, text)
    code, out, _ = run_cli("stats", str(path))
    assert code == 0
    assert "e: " in out and "tokens" in out and "quality" in out and "verdict" in out
    code, out, _ = run_cli("stats", str(path), "--json", "--method", "bayesian")
    (report,) = json.loads(out)["experiments"]
    kinds = {c["metric"]: c["kind"] for c in report["comparisons"]}
    assert kinds == {"tokens": "ratio", "quality": "cuped"}
    quality = next(c for c in report["comparisons"] if c["metric"] == "quality")
    assert 0.0 <= quality["chance_to_win"] <= 1.0
    assert "cuped_variance_reduction" in quality["extra"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("experiment,metric,variant,n,sum\ne,q,a,10,5\n", "missing column(s) ['kind']"),
        (
            HEADER + "e,q,mean,a,10,5,3,\ne,q,mean,b,10,abc,3,\n",
            "row 3, column 'sum': not a number",
        ),
        (HEADER + "e,q,median,a,10,5,3,\n", "row 2, column 'kind'"),
        (HEADER + "e,q,mean,a,10,5,,\n", "row 2, column 'sum_squares': required"),
        (HEADER + "e,q,proportion,a,10,12,,\n", "row 2, column 'sum': successes"),
        (HEADER + "e,q,mean,a,10,5,1,\n", "row 2, column 'sum_squares': smaller than"),
        (HEADER + "e,q,mean,a,-3,5,3,\n", "row 2, column 'n'"),
        (HEADER + "e,q,mean,a,10,5,3,\ne,q,mean,a,10,5,3,\n", "row 3: variant 'a' repeated"),
        (HEADER + "e,q,mean,a,10,5,3,0.5\ne,q,mean,b,10,5,3,\n", "'weight' for every arm"),
        (HEADER, "no data rows"),
    ],
)
def test_bad_csv_gives_one_clear_error(
    tmp_path: Path, run_cli: Any, text: str, message: str
) -> None:
    path = _write(tmp_path, text)
    code, out, err = run_cli("stats", str(path), "--json")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("llmopt: error: ")
    assert message in err


def test_degenerate_csv_reports_cannot_analyse(tmp_path: Path, run_cli: Any) -> None:
    path = _write(
        tmp_path, HEADER + "e,q,mean,a,1,0.5,0.25,\ne,q,mean,b,10,5,3,\nf,q,mean,a,5,2,1,\n"
    )
    code, out, _ = run_cli("stats", str(path), "--json")
    assert code == 0
    reports = {r["experiment_id"]: r for r in json.loads(out)["experiments"]}
    assert reports["e"]["decision"]["action"] == "cannot analyse"
    assert "fewer than 2 units" in reports["e"]["decision"]["reasons"][0]
    assert reports["f"]["decision"]["action"] == "cannot analyse"  # one arm only


def test_experiments_analyze_on_the_warehouse(
    tmp_path: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPT_HOME", str(tmp_path))
    monkeypatch.setenv("LLMOPT_CONFIG_DIR", str(REPO_ROOT / "tasks" / "simulation" / "demo_config"))
    code, _, err = run_cli("experiments", "analyze")
    assert code == 1 and "no warehouse" in err
    from tasks.core.settings import load_settings
    from tasks.warehouse.connection import connect

    con = connect(load_settings())
    rng = np.random.default_rng(0)
    n = 4000
    treat = np.arange(n) % 2 == 1
    day = np.datetime64("2026-10-01") + (np.arange(n) % 10).astype("timedelta64[D]")
    incoming = pa.table(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "ts": pa.array(day.astype("datetime64[us]") + np.timedelta64(12, "h")).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "day": pa.array(day),
            "variant_id": np.where(treat, "treatment", "control").tolist(),
            "unit_id": [f"u{i}" for i in range(n)],
            "quality": np.clip(rng.normal(0.7 + 0.04 * treat, 0.1), 0, 1),
            "latency_ms": rng.gamma(4.0, 200.0, n),
            "status": np.where(rng.random(n) < 0.01, "error", "success").tolist(),
        }
    )
    con.register("incoming", incoming)
    con.execute(
        "INSERT INTO usage_logs BY NAME SELECT *, 'support-summarize' AS use_case,"
        " 'gpt-4o-mini' AS model, 'exp-summarize-prompt-v2' AS experiment_id,"
        " 100 AS input_tokens, 50 AS output_tokens, 0.001 AS cost_usd, 'log' AS cost_source,"
        " 'f' AS source_file, 1 AS source_line, 'i' AS ingest_id FROM incoming"
    )
    con.close()
    plot = tmp_path / "plot.png"
    argv = ["experiments", "analyze", "--as-of", "2026-10-10", "--run-id", "t1", "--json"]
    code, out, _ = run_cli(*argv, "--plot", str(plot))
    assert code == 0, out
    payload = json.loads(out)
    assert payload["run_id"] == "t1"
    (report,) = payload["experiments"]
    assert report["as_of"] == "2026-10-10" and report["days_elapsed"] == 10
    assert report["decision"]["label"] == "ship treatment"
    assert plot.exists()
    code, out, _ = run_cli("experiments", "analyze", "--as-of", "2026-10-10")
    assert code == 0 and "exp-summarize-prompt-v2: ship treatment" in out
    code, _, err = run_cli("stats", str(tmp_path / "missing.csv"))
    assert code == 1 and "file not found" in err


def test_non_utf8_file_and_non_finite_options_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], run_cli: Any
) -> None:
    latin = tmp_path / "latin1.csv"
    text = HEADER + "exp,qualité,mean,control,10,5,3,\n"
    latin.write_bytes(text.encode("latin-1"))
    code, _, err = run_cli("stats", str(latin))
    assert code == 1
    where = text.index("é")
    assert err.strip().splitlines() == [
        f"llmopt: error: {latin}: not UTF-8 text (byte 0xe9 at offset {where}); save it as UTF-8"
    ]
    rows = "exp,quality,mean,control,10,5,3,\nexp,quality,mean,b,10,6,4,\n"
    good = _write(tmp_path, HEADER + rows)
    for option, value in (("--n-star", "inf"), ("--n-star", "nan"), ("--prior-mean", "inf")):
        with pytest.raises(SystemExit) as exc:
            main(["stats", str(good), option, value])
        err = capsys.readouterr().err
        assert exc.value.code == 2
        assert err.strip().splitlines()[-1].endswith(f"must be a finite number, got '{value}'")
    code, out, _ = run_cli(
        "stats", str(good), "--json", "--method", "bayesian", "--prior-sd", "inf",
        "--prior-scale", "relative",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["experiments"][0]["method"] == "bayesian"


def test_human_table_keeps_columns_apart_and_shows_relative_p(tmp_path: Path, run_cli: Any) -> None:
    rows = "exp,cost_usd,mean,control,1350,9.1275,0.09,\nexp,cost_usd,mean,b,1400,9.6,0.095,\n"
    path = _write(tmp_path, HEADER + rows)
    code, out, _ = run_cli("stats", str(path), "--method", "fixed")
    assert code == 0
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.strip().startswith("metric"))
    assert lines[head].split() == [
        "metric", "role", "arm", "effect", "CI", "low", "CI", "high", "rel", "%", "p", "p",
        "rel", "p", "adj", "win", "verdict",
    ]  # fmt: skip
    cells = lines[head + 2].split()
    assert cells[:3] == ["cost_usd", "primary", "b"]
    assert cells[11:] == ["no", "difference", "yet"]
    for cell in cells[3:11]:
        float(cell)  # every number parses alone: nothing ran together
