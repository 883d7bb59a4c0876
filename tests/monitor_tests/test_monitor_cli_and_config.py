"""``llmopt monitor`` end to end on a small simulated warehouse, and the config parser."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tasks.core.config import ConfigError
from tasks.core.settings import REPO_ROOT, Settings
from tasks.monitoring.run import load_monitoring_config, parse_monitoring_config


@pytest.fixture
def small_world(
    settings: Settings,
    warehouse: Any,
    load_rows: Callable[[Any, Any], int],
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    simulator = pytest.importorskip("tasks.simulation")
    spec = simulator.SimulationSpec(
        include_cost=True,
        days=22,
        requests_per_day={"sales-email": 300, "ticket-classify": 200},
    )
    load_rows(warehouse, simulator.simulate(spec))
    warehouse.close()
    monkeypatch.setenv("LLMOPT_HOME", str(settings.home))
    monkeypatch.setenv("LLMOPT_CONFIG_DIR", str(REPO_ROOT / "tasks" / "simulation" / "demo_config"))
    return settings


def test_monitor_json_reports_drift_and_the_decision(
    small_world: Settings, run_cli: Any, tmp_path: Path
) -> None:
    code, out, _ = run_cli("monitor", "--json", "--plot-dir", str(tmp_path / "plots"))
    assert code == 0
    payload = json.loads(out)
    assert payload["as_of"] == "2026-10-22" and payload["recorded"] is False
    by_uc = {u["use_case"]: u for u in payload["use_cases"]}
    assert set(by_uc) == {"sales-email", "ticket-classify"}
    sales = by_uc["sales-email"]
    assert "input_tokens" in sales["drifted"]
    assert sales["action"]["kind"] in {"rollback", "pause_optimizer"}
    assert any("quality" in r for r in sales["rules_fired"])
    drift = {d["feature"]: d for d in sales["drift"]}
    assert drift["input_tokens"]["psi_band"] == "significant"
    assert by_uc["ticket-classify"]["status"] == "ok"
    assert len(payload["plots"]) == 2 and all(Path(p).is_file() for p in payload["plots"])
    assert payload["alerts_stored"] == 0  # read-only without --record


def test_monitor_record_stores_alerts_once(small_world: Settings, run_cli: Any) -> None:
    from tasks.warehouse.connection import connect

    code, out, _ = run_cli("monitor", "--as-of", "2026-10-21", "--record")
    assert code == 0
    assert "sales-email: CRITICAL" in out or "sales-email: WARNING" in out
    run_cli("monitor", "--as-of", "2026-10-22", "--record", "--json")
    con = connect(small_world)
    try:
        keys = [
            r[0]
            for r in con.execute(
                "SELECT incident_key FROM monitoring_alerts WHERE use_case = 'sales-email'"
            ).fetchall()
        ]
    finally:
        con.close()
    assert "sales-email|rule|quality_drop" in keys and len(keys) == len(set(keys))


def test_monitor_errors_are_one_clear_line(small_world: Settings, run_cli: Any) -> None:
    code, _, err = run_cli("monitor", "--as-of", "21-10-2026")
    assert code == 1 and err.startswith("llmopt: error: --as-of")


def test_config_file_is_parsed_with_per_use_case_overrides(settings: Settings) -> None:
    config = load_monitoring_config(settings)
    assert config.rules_for("code-review").error_rate_max == 0.06
    assert config.rules_for("code-review").latency_p95_slo_ms == 60000
    assert config.rules_for("unknown").latency_p95_slo_ms is None
    assert config.policy_for("sales-email").on_cost_spike == "circuit_breaker"
    assert [d.name for d in config.detectors()] == ["adwin", "page_hinkley", "cusum"]


def test_config_errors_name_the_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[rules\].*quality_drop"):
        parse_monitoring_config({"rules": {"quality_drop": 0.2}})
    with pytest.raises(ConfigError, match="unknown numeric field"):
        parse_monitoring_config({"drift": {"numeric": ["password"]}})
    with pytest.raises(ConfigError, match="series_days"):
        parse_monitoring_config({"windows": {"series_days": 7}})


def test_absent_config_file_means_documented_defaults(tmp_path: Path) -> None:
    from tasks.core.settings import load_settings

    settings = load_settings(env={"LLMOPT_HOME": str(tmp_path), "LLMOPT_CONFIG_DIR": str(tmp_path)})
    config = load_monitoring_config(settings)
    assert config.reference_days == 14 and config.rules.error_rate_max == 0.01
    assert config.notifier.urls == ()
