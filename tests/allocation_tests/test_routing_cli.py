"""``llmopt bandit --contextual`` prints a routing table ``llmopt offpolicy`` reads as it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tasks.simulation.demo_config import DEMO_CONFIG_DIR
from tasks.simulation.worlds_routing import RoutingWorld, segmented_world
from tasks.warehouse.connection import connect


@pytest.fixture
def world_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_table: Any
) -> tuple[Path, RoutingWorld]:
    monkeypatch.setenv("LLMOPT_HOME", str(tmp_path))
    monkeypatch.delenv("LLMOPT_WAREHOUSE", raising=False)
    monkeypatch.setenv("LLMOPT_CONFIG_DIR", str(DEMO_CONFIG_DIR))
    world = segmented_world(requests_per_day=1500, days=10, seed=31)
    con = connect(path=tmp_path / "data" / "warehouse.duckdb")
    load_table(con, world.simulate())
    con.close()
    return tmp_path, world


def test_contextual_bandit_output_is_an_offpolicy_policy_as_is(
    world_home: tuple[Path, RoutingWorld], run_cli: Any
) -> None:
    home, world = world_home
    code, out, _ = run_cli("bandit", "--contextual", "--json")
    assert code == 0
    payload = json.loads(out)
    (entry,) = payload["contextual"]
    assert entry["use_case"] == world.use_case
    assert entry["status"] == "proposed", entry["reasons"]
    assert entry["context"] == "user_segment"
    assert entry["skipped_columns"].keys() >= {"task_type", "language"}
    table = entry["table"]
    assert set(table["rows"]) == {s.name for s in world.segments}
    # the whole output, untouched, is a valid --policy (the context comes from the table)
    path = home / "bandit.json"
    path.write_text(out, encoding="utf-8")
    code, out, err = run_cli(
        "offpolicy", "--use-case", world.use_case, "--policy", str(path), "--json"
    )
    assert code == 0, err
    estimate = json.loads(out)
    assert estimate["status"] == "ok"
    assert estimate["context"] == "user_segment"
    # graded by the truth: the DR interval of the table's quality covers its true quality
    true_quality = world.policy_metrics({**table["rows"], "*": table["default"]})[0]
    dr = estimate["estimate"]["dr"]
    assert dr["lower"] <= true_quality <= dr["upper"]
    # just the table works too
    code, out, _ = run_cli("offpolicy", "--use-case", world.use_case, "--policy", json.dumps(table))
    assert code == 0 and "[ok]" in out


def test_contextual_bandit_human_output_and_unknown_use_case_table(
    world_home: tuple[Path, RoutingWorld], run_cli: Any
) -> None:
    home, _ = world_home
    code, out, _ = run_cli("bandit", "--contextual", "--features", "user_segment,language")
    assert code == 0
    assert "routing [proposed] on user_segment" in out
    assert "language skipped: empty" in out
    assert "* (default):" in out
    code, out, _ = run_cli("bandit", "--contextual", "--json")
    path = home / "bandit.json"
    path.write_text(out, encoding="utf-8")
    code, _, err = run_cli("offpolicy", "--use-case", "other", "--policy", str(path))
    assert code == 1 and "0 routing table(s) for 'other'" in err
