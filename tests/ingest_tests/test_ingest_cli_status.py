"""``llmopt ingest`` / ``llmopt status`` through flows.cli.main, and the GX results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.cli import main
from tasks.core.settings import Settings


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch, no_overrides: Path) -> Settings:
    monkeypatch.setenv("LLMOPT_HOME", str(settings.home))
    monkeypatch.setenv("LLMOPT_PRICE_OVERRIDES", str(no_overrides))
    return settings


def test_status_without_a_warehouse_is_one_clear_error(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--json"]) == 1
    assert "no warehouse" in capsys.readouterr().err


def test_ingest_then_status_json_with_great_expectations_results(
    cli_env: Settings, tmp_path: Path, kit: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [kit.record(i) for i in range(30)] + ["{oops", kit.record(3), kit.record(99, quality=7)]
    path = kit.write_jsonl(tmp_path / "logs.jsonl", rows)
    assert main(["ingest", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    totals = report["totals"]
    assert (totals["lines_read"], totals["ingested"], totals["duplicates"]) == (33, 30, 1)
    assert totals["quarantine_by_reason"] == {"malformed_json": 1, "out_of_range": 1}
    assert totals["balanced"] is True
    validation = report["validation"]
    assert validation["success"] is True and validation["sample_rows"] == 30
    assert validation["statistics"]["evaluated_expectations"] == len(validation["expectations"])

    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["rows"] == 30 and status["days"] == 28
    assert status["use_cases"] == {"support-summarize": 15, "ticket-classify": 15}
    assert status["quarantine_by_reason"] == {"malformed_json": 1, "out_of_range": 1}
    assert status["last_ingest"]["ingested"] == 30
    assert status["last_validation"]["run_id"] == report["run_id"]

    assert main(["ingest", str(path)]) == 0  # human output, and idempotent
    assert "skipped" in capsys.readouterr().out
    assert main(["status"]) == 0
    assert "rows: 30" in capsys.readouterr().out


def test_great_expectations_flags_a_bad_batch(tmp_path: Path) -> None:
    import pandas as pd

    from tasks.ingest.validation import load_suite_definition, validate_frame

    frame = pd.DataFrame(
        {
            "request_id": ["a", "a", None],
            "ts": pd.to_datetime(["2026-10-01"] * 3, utc=True),
            "use_case": ["u"] * 3,
            "model": ["m"] * 3,
            "input_tokens": [1, 2, 3],
            "output_tokens": [1, 2, 3],
            "latency_ms": [1.0, 2.0, 3.0],
            "cost_usd": [0.1, 0.1, 0.1],
            "quality": [0.5, 0.5, 0.5],
            "propensity": [0.5, 0.5, 0.5],
            "feedback": [1, 0, -1],
            "status": ["error", "error", "success"],
            "cost_source": ["log"] * 3,
        }
    )
    summary = validate_frame(frame, load_suite_definition())
    failed = {(e["type"], e["column"]) for e in summary["expectations"] if not e["success"]}
    assert summary["success"] is False
    assert failed == {
        ("expect_column_values_to_not_be_null", "request_id"),
        ("expect_column_values_to_be_unique", "request_id"),
        ("expect_column_values_to_be_in_set", "status"),
    }


def test_ingest_with_a_missing_path_exits_1(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["ingest", str(tmp_path / "missing.jsonl")]) == 1
    assert "missing.jsonl" in capsys.readouterr().err


def test_ingest_use_case_options_and_per_file_progress(
    cli_env: Settings, tmp_path: Path, kit: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = kit.write_jsonl(
        tmp_path / "no_use_case.jsonl", [kit.record(i, use_case=...) for i in range(4)]
    )
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"tag": {"x": "y"}, "default": "from-map"}), encoding="utf-8")
    assert main(["ingest", str(path), "--use-case-map", str(mapping), "--no-validate"]) == 0
    captured = capsys.readouterr()
    assert "ingested" in captured.err and "no_use_case.jsonl" in captured.err  # progress line
    assert "ingested=4" in captured.out
    other = kit.write_jsonl(
        tmp_path / "other.jsonl", [kit.record(10 + i, use_case=...) for i in range(2)]
    )
    assert main(["ingest", str(other), "--use-case", "cli-default", "--json", "--no-validate"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and json.loads(captured.out)["totals"]["ingested"] == 2
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["use_cases"] == {"cli-default": 2, "from-map": 4}
    mapping.write_text(json.dumps({"team": {}}), encoding="utf-8")
    assert main(["ingest", str(path), "--use-case-map", str(mapping)]) == 1
    assert "unknown use-case mapping sections" in capsys.readouterr().err
