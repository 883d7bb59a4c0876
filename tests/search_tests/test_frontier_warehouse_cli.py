"""Frontier from the warehouse on simulated logs, its plot, and the `llmopt` commands."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from flows.cli import main
from flows.cli_support import to_jsonable
from tasks import simulation as sim
from tasks.core.settings import REPO_ROOT, Settings
from tasks.search.frontier import compute_frontier, most_served_config, plot_frontier
from tasks.warehouse.connection import connect
from tasks.warehouse.rollup_specs import LATENCY_RELATIVE_BOUND

UC = "support-summarize"
SPEC = sim.SimulationSpec(
    days=3,
    requests_per_day={UC: 4000},
    include_cost=True,
    experiments=False,
    drift=False,
    cost_spike=False,
)
END = SPEC.start_date + dt.timedelta(days=2)


@functools.cache
def _simulated() -> pa.Table:
    return sim.simulate(SPEC)


@pytest.fixture
def logs() -> pa.Table:
    return _simulated()


@pytest.fixture(scope="module")
def truth() -> Any:
    return sim.ground_truth(SPEC).use_cases[UC]


def _ids(truth: Any) -> dict[str, str]:
    by_model = {}
    for c in truth.configs:
        by_model[f"{c.model}/{c.prompt_id}/{c.max_tokens}"] = c.config_id
    return by_model


def test_frontier_on_simulated_logs_matches_sql_and_truth(  # noqa: PLR0917 - pytest fixtures
    warehouse: Any,
    logs: pa.Table,
    truth: Any,
    insert_logs: Callable[[Any, pa.Table], int],
    observed_objectives: Callable[[Any, str], tuple[float, float, float]],
    tmp_path: Path,
) -> None:
    insert_logs(warehouse, logs)
    production = most_served_config(warehouse, use_case=UC, start=SPEC.start_date, end=END)
    assert production == truth.production_config_id
    result = compute_frontier(
        warehouse, use_case=UC, start=SPEC.start_date, end=END, production_config=production
    )
    assert len(result.points) == len(truth.configs) and result.excluded == ()
    for p in result.points:
        expected = observed_objectives(warehouse, p.config_key)
        assert (p.quality, p.cost_usd) == pytest.approx(expected[:2])
        # p95 from the daily rollups' log-spaced bins: within their stated bound (issue 17)
        assert p.latency_p95_ms == pytest.approx(expected[2], rel=LATENCY_RELATIVE_BOUND)
    ids = _ids(truth)
    cheap, haiku = ids["gpt-4o-mini/summarize-v1/512"], ids["claude-haiku-4-5/summarize-v2/512"]
    # the cheapest config and the best-quality config per cent are on the frontier ...
    assert {cheap, haiku} <= set(result.frontier)
    # ... and configurations that are truly worse on every objective are dominated.
    worse = [
        c.config_id
        for c in truth.configs
        if c.true_mean_quality < truth.config(haiku).true_mean_quality - 0.02
        and c.true_mean_cost_usd > truth.config(haiku).true_mean_cost_usd
        and c.true_p95_latency_ms > truth.config(haiku).true_p95_latency_ms
    ]
    assert worse, "the simulated world should contain clearly dominated configurations"
    assert not set(worse) & set(result.frontier)
    assert result.selection.status == "selected" and result.selection.config_key == haiku
    assert result.production is not None and result.score_gain_vs_production is not None
    assert result.score_gain_vs_production > 0
    strict = compute_frontier(
        warehouse, use_case=UC, start=SPEC.start_date, end=END, quality_floor=0.99
    )
    assert strict.selection.status == "no_feasible" and strict.selection.config_key is None
    png = plot_frontier(result, tmp_path / "plots" / "frontier.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # the production star (tab:red) is drawn in the panels, below the title and legend
    panels = np.asarray(Image.open(png).convert("RGB"))[60:]
    assert (panels == (214, 39, 40)).all(axis=-1).any()
    # the nightly flow plots from two threads at once: same bytes as one thread
    with ThreadPoolExecutor(2) as pool:
        jobs = [
            (result, tmp_path / f"t{k}.png") if k % 2 else (strict, tmp_path / f"t{k}.png")
            for k in range(4)
        ]
        pngs = list(pool.map(lambda job: plot_frontier(*job).read_bytes(), jobs))
    assert pngs[1] == pngs[3] == png.read_bytes()
    assert pngs[0] == pngs[2] == plot_frontier(strict, tmp_path / "strict.png").read_bytes()
    json.dumps(to_jsonable(result))


def test_frontier_without_data_is_an_explicit_result(warehouse: Any, tmp_path: Path) -> None:
    result = compute_frontier(warehouse, use_case=UC, production_config="nope")
    assert result.selection.status == "no_data" and result.points == ()
    assert "cannot be placed" in result.production_note
    png = plot_frontier(result, tmp_path / "empty.png")  # empty panels, the reason in words
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_frontier_and_search_commands(
    settings: Settings,
    insert_logs: Callable[[Any, pa.Table], int],
    truth: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tmp_path = settings.home
    logs = _simulated()
    con = connect(settings)
    insert_logs(con, logs)
    con.close()
    monkeypatch.setenv("LLMOPT_HOME", str(settings.home))
    monkeypatch.setenv("LLMOPT_CONFIG_DIR", str(REPO_ROOT / "tasks" / "simulation" / "demo_config"))
    monkeypatch.delenv("LLMOPT_WAREHOUSE", raising=False)
    monkeypatch.delenv("LLMOPT_OPTUNA_STORAGE", raising=False)
    plot = tmp_path / "f.png"

    assert main(["frontier", "--json", "--preset", "cost-focused", "--plot", str(plot)]) == 0
    payload = json.loads(capsys.readouterr().out)
    (front,) = payload["frontiers"]
    assert front["use_case"] == UC and front["preset"] == "cost-focused"
    assert front["selection"]["status"] == "selected" and plot.is_file()
    assert front["production_config"] == truth.production_config_id

    assert main(["frontier", "--use-case", UC, "--quality-floor", "0.99"]) == 0
    assert "no_feasible" in capsys.readouterr().out

    assert main(["search", "round", "--json", "--use-case", UC, "--candidates", "2"]) == 0
    rnd = json.loads(capsys.readouterr().out)["rounds"][0]
    assert rnd["as_of"] == END.isoformat() and len(rnd["new_candidates"]) == 2
    assert (settings.warehouse_path.parent / "optuna_studies.sqlite").is_file()

    assert main(["search", "status", "--use-case", UC]) == 0
    out = capsys.readouterr().out
    assert "running 2" in out and all(c["config_id"] in out for c in rnd["new_candidates"])

    monkeypatch.setenv("LLMOPT_WAREHOUSE", str(tmp_path / "missing.duckdb"))
    assert main(["frontier"]) == 1
    assert "no warehouse" in capsys.readouterr().err
