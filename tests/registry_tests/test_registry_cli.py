"""``llmopt registry ...`` end to end in-process, against an isolated home."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.cli import main
from tasks.core.settings import Settings
from tasks.registry.snapshot import read_snapshot

UC = "support-summarize"


@pytest.fixture
def cli(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    monkeypatch.setenv("LLMOPT_HOME", str(settings.home))
    monkeypatch.setenv("LLMOPT_CONFIG_DIR", str(settings.config_dir))

    def run(*argv: str) -> tuple[int, Any, str]:
        code = main(["registry", *argv])
        out, err = capsys.readouterr()
        try:
            payload = json.loads(out) if "--json" in argv else out
        except ValueError:
            payload = out
        return code, payload, err

    return run


def test_publish_approve_promote_rollback_history_show(
    cli: Any, make_config: Any, settings: Settings, tmp_path: Path
) -> None:
    config_file = tmp_path / "cfg.json"
    config_file.write_text(json.dumps(make_config(UC, weights=(0.9, 0.1)).to_dict()))
    evidence = tmp_path / "evidence.json"
    evidence.write_text(json.dumps({"quality": 0.81}))
    code, doc, _ = cli(
        "publish", UC, "--file", str(config_file), "--reason", "first", "--run-id", "run-1",
        "--evidence", str(evidence), "--actor", "alice", "--json",
    )  # fmt: skip
    assert code == 0 and (doc["version"], doc["state"], doc["run_id"]) == (1, "candidate", "run-1")
    assert doc["evidence"] == {"quality": 0.81}
    code, doc, _ = cli(
        "approve", UC, "1", "--comment", "ok", "--promote", "--actor", "bob", "--json"
    )
    assert code == 0 and doc["state"] == "production"
    assert read_snapshot(settings.registry_snapshot_dir / f"{UC}.json").version == 1

    passing = "srm=pass,quality=pass,error_rate=pass,latency_p95=pass,cost_per_request=pass"
    code, result, _ = cli(
        "publish", UC, "--file", str(config_file), "--reason", "nightly", "--expected-version", "1",
        "--guardrails", passing, "--json",
    )  # fmt: skip
    assert code == 0 and (result["decision"], result["version"]) == ("auto_promoted", 2)
    code, doc, _ = cli("rollback", UC, "--reason", "regression", "--actor", "ops", "--json")
    assert code == 0 and doc["version"] == 1
    code, entries, _ = cli("history", UC, "--json")
    assert [(e["version"], e["action"]) for e in entries][-2:] == [(2, "retire"), (1, "rollback")]
    assert entries[-1]["reason"] == "regression" and entries[-1]["actor"] == "ops"
    code, text, _ = cli("show", UC)
    assert code == 0 and "support-summarize v1 [production]" in text and "arm arm-1" in text
    code, doc, _ = cli("show", UC, "--version", "2", "--json")
    assert doc["state"] == "retired"
    code, rows, _ = cli("list", "--json")
    assert rows == [{"use_case": UC, "production_version": 1, "latest_version": 2}]
    out_dir = tmp_path / "snaps"
    code, payload, _ = cli("snapshot", "--out", str(out_dir), "--json")
    assert payload == {"snapshots": [str(out_dir / f"{UC}.json")]}
    assert code == 0 and read_snapshot(out_dir / f"{UC}.json").version == 1


def test_errors_are_one_line_and_exit_1(cli: Any, make_config: Any, tmp_path: Path) -> None:
    code, _, err = cli("approve", UC, "3", "--comment", "x")
    assert code == 1 and err.startswith("llmopt: error: NotFoundError")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"use_case": UC, "params": {"model": "m", "temperature": 9}}))
    code, _, err = cli("publish", UC, "--file", str(bad), "--reason", "r")
    assert code == 1 and "temperature must be in [0, 2]" in err
    code, _, err = cli("publish", UC, "--file", str(tmp_path / "missing.json"), "--reason", "r")
    assert code == 1 and "cannot read config file" in err
    good = tmp_path / "good.json"
    good.write_text(json.dumps(make_config(UC).to_dict()))
    code, _, err = cli(
        "publish", UC, "--file", str(good), "--reason", "r", "--expected-version", "4"
    )
    assert code == 1 and "StaleVersionError" in err
    code, _, err = cli("publish", UC, "--file", str(good), "--reason", "r", "--guardrails", "srm")
    assert code == 1 and "name=pass|fail" in err
    code, _, err = cli("history", UC)
    assert code == 1 and "no history" in err
