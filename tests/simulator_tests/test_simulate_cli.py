"""`llmopt simulate` end to end through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main
from tasks.simulation import load_ground_truth


def test_simulate_command_writes_logs_and_ground_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "simulate", "--out", str(tmp_path), "--days", "2", "--rows", "401",
            "--format", "jsonl", "--gzip", "--seed", "9", "--no-drift", "--json",
        ]
    )  # fmt: skip
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["rows"] == 401 and sum(payload["rows_per_day"]) == 401
    assert payload["drift"] is False and payload["cost_spike"] is False  # day 25 > 2 days
    assert len(payload["paths"]) == 2 and all(Path(p).exists() for p in payload["paths"])
    truth = load_ground_truth(payload["ground_truth_path"])
    assert truth.spec.seed == 9 and truth.spec.total_rows == 401 and truth.drift is None
    assert {e.experiment_id for e in truth.experiments} == set(payload["experiments"])


def test_simulate_command_human_output_and_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["simulate", "--out", str(tmp_path), "--days", "3", "--requests-per-day", "101"]
    assert main([*args, "--no-experiments", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "wrote 303 rows" in out and "true optimum" in out
    assert main([*args, "--no-experiments", "--format", "csv", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows_per_day"] == [101, 101, 101]
    assert not load_ground_truth(tmp_path).experiments
    assert main(["simulate", "--out", str(tmp_path), "--days", "0"]) == 1
    assert "--days must be positive" in capsys.readouterr().err
    assert main(["simulate", "--out", str(tmp_path), "--start-date", "2026-13-01"]) == 1
    assert "--start-date" in capsys.readouterr().err
