"""``llmopt budget | bandit | offpolicy`` end to end on a simulated warehouse file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tasks.simulation import SimulationSpec, simulate
from tasks.simulation.demo_config import DEMO_CONFIG_DIR
from tasks.simulation.world import exploration_configs, production_config
from tasks.warehouse.connection import connect


@pytest.fixture
def sim_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_table: Any) -> Path:
    monkeypatch.setenv("LLMOPT_HOME", str(tmp_path))
    monkeypatch.delenv("LLMOPT_WAREHOUSE", raising=False)
    monkeypatch.setenv("LLMOPT_CONFIG_DIR", str(DEMO_CONFIG_DIR))  # the simulated use cases
    spec = SimulationSpec(
        seed=2,
        days=10,
        requests_per_day={"sales-email": 400, "code-review": 300},
        include_cost=True,
    )
    con = connect(path=tmp_path / "data" / "warehouse.duckdb")
    load_table(con, simulate(spec))
    con.close()
    return tmp_path


def test_budget_command_reports_every_configured_use_case(sim_home: Path, run_cli: Any) -> None:
    code, out, _ = run_cli("budget", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["as_of"] == "2026-10-10"
    reports = {r["use_case"]: r for r in payload["reports"]}
    # budget.toml lists four use cases; two have no calls in this warehouse
    assert reports["ticket-classify"]["status"] == "no_data"
    assert reports["sales-email"]["requests_to_date"] == 4000
    assert reports["sales-email"]["forecast"]["days_in_month"] == 31
    mixes = {m["use_case"]: m for m in payload["traffic_mix"]}
    assert mixes["code-review"]["status"] == "ok"
    weights = mixes["code-review"]["mix"]["weights"]
    assert sum(weights.values()) == pytest.approx(1.0)
    code, human, _ = run_cli("budget", "--use-case", "sales-email", "--no-mix")
    assert code == 0 and "sales-email" in human and "forecast" in human


def test_bandit_command_gives_weights_per_use_case(sim_home: Path, run_cli: Any) -> None:
    code, out, _ = run_cli("bandit", "--json", "--contextual", "--seed", "3")
    assert code == 0
    payload = json.loads(out)
    allocations = {a["use_case"]: a for a in payload["allocations"]}
    assert set(allocations) == {"sales-email", "code-review"}
    for allocation in allocations.values():
        assert allocation["status"] == "ok"
        assert sum(a["weight"] for a in allocation["arms"]) == pytest.approx(1.0)
    routed = {r["use_case"]: r for r in payload["contextual"]}
    assert set(routed) == {"sales-email", "code-review"}
    assert all(r["status"] in {"proposed", "not_proposed", "cannot_route"} for r in routed.values())
    code, out, _ = run_cli("bandit", "--json", "--linucb", "--use-case", "sales-email")
    cells = json.loads(out)["linucb"][0]["cells"]
    assert cells and {"task_type", "user_segment"} == set(cells[0]["cell"])
    code, _, err = run_cli("bandit", "--features", "bogus", "--contextual")
    assert code == 1 and "unknown context column" in err
    code, _, err = run_cli("bandit", "--features", "bogus", "--linucb")
    assert code == 1 and "unknown context feature" in err


def test_offpolicy_command_estimates_and_refuses(sim_home: Path, run_cli: Any) -> None:
    explore = exploration_configs("sales-email")[0].config_id
    prod = production_config("sales-email").config_id
    policy = json.dumps({prod: 0.5, explore: 0.5})
    code, out, _ = run_cli("offpolicy", "--use-case", "sales-email", "--policy", policy, "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["status"] == "ok"
    est = payload["estimate"]
    assert est["dr"]["lower"] < est["dr"]["value"] < est["dr"]["upper"]
    code, out, _ = run_cli(
        "offpolicy", "--use-case", "sales-email", "--policy", '{"never-served": 1}'
    )
    assert code == 0 and "cannot_estimate" in out and "never served" in out
    code, _, err = run_cli("offpolicy", "--use-case", "x", "--policy", "{not json")
    assert code == 1 and "not valid JSON" in err


def test_commands_fail_clearly_without_a_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Any
) -> None:
    monkeypatch.setenv("LLMOPT_HOME", str(tmp_path))
    monkeypatch.delenv("LLMOPT_WAREHOUSE", raising=False)
    code, _, err = run_cli("budget")
    assert code == 1 and "no warehouse" in err
