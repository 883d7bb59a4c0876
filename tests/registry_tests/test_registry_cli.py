"""``llmopt registry ...`` end to end in-process, against an isolated home."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tasks.core.settings import Settings
from tasks.registry.snapshot import read_snapshot

UC = "support-summarize"


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, run_cli: Any) -> Any:
    monkeypatch.setenv("LLMOPT_HOME", str(settings.home))
    monkeypatch.setenv("LLMOPT_CONFIG_DIR", str(settings.config_dir))
    monkeypatch.delenv("LLMOPT_REGISTRY_TOKEN", raising=False)
    monkeypatch.delenv("LLMOPT_REGISTRY_TOKENS_FILE", raising=False)

    def run(*argv: str) -> tuple[int, Any, str]:
        code, out, err = run_cli("registry", *argv)
        try:
            payload = json.loads(out) if "--json" in argv else out
        except ValueError:
            payload = out
        return code, payload, err

    return run


@pytest.fixture
def people(cli: Any) -> None:
    """alice proposes, bob approves, carol promotes, ops does everything (via ``init``)."""
    for name, roles in (
        ("alice", "propose"), ("bob", "approve"), ("carol", "promote"),
        ("ops", "propose,approve,promote"),
    ):  # fmt: skip
        code, _, err = cli("init", "--principal", name, "--roles", roles)
        assert code == 0, err


def test_publish_approve_promote_rollback_history_show(
    cli: Any, people: None, make_config: Any, settings: Settings, tmp_path: Path
) -> None:
    config_file = tmp_path / "cfg.json"
    config_file.write_text(json.dumps(make_config(UC, weights=(0.9, 0.1)).to_dict()))
    evidence = tmp_path / "evidence.json"
    evidence.write_text(json.dumps({"quality": 0.81}))
    code, doc, _ = cli(
        "publish", UC, "--file", str(config_file), "--reason", "first", "--run-id", "run-1",
        "--evidence", str(evidence), "--as", "alice", "--json",
    )  # fmt: skip
    assert code == 0 and (doc["version"], doc["state"], doc["run_id"]) == (1, "candidate", "run-1")
    assert doc["evidence"] == {"quality": 0.81}
    code, doc, _ = cli("approve", UC, "1", "--comment", "ok", "--promote", "--as", "ops", "--json")
    assert code == 0 and doc["state"] == "production"
    assert read_snapshot(settings.registry_snapshot_dir / f"{UC}.json").version == 1

    passing = "srm=pass,quality=pass,error_rate=pass,latency_p95=pass,cost_per_request=pass"
    code, result, _ = cli(
        "publish", UC, "--file", str(config_file), "--reason", "nightly", "--expected-version", "1",
        "--guardrails", passing, "--as", "alice", "--json",
    )  # fmt: skip
    assert code == 0 and (result["decision"], result["version"]) == ("auto_promoted", 2)
    code, doc, _ = cli(
        "rollback", UC, "--reason", "regression", "--as", "carol", "--expected-production", "2",
        "--json",
    )  # fmt: skip
    assert code == 0 and doc["version"] == 1
    code, entries, _ = cli("history", UC, "--json")
    assert [(e["version"], e["action"]) for e in entries][-2:] == [(2, "retire"), (1, "rollback")]
    assert entries[-1]["reason"] == "regression" and entries[-1]["actor"] == "carol"
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


def test_errors_are_one_line_and_exit_1(
    cli: Any, people: None, make_config: Any, tmp_path: Path
) -> None:
    code, _, err = cli("approve", UC, "3", "--comment", "x", "--as", "bob")
    assert code == 1 and err.startswith("llmopt: error: NotFoundError")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"use_case": UC, "params": {"model": "m", "temperature": 9}}))
    code, _, err = cli("publish", UC, "--file", str(bad), "--reason", "r", "--as", "alice")
    assert code == 1 and "temperature must be in [0, 2]" in err
    code, _, err = cli(
        "publish", UC, "--file", str(tmp_path / "missing.json"), "--reason", "r", "--as", "alice"
    )
    assert code == 1 and "cannot read config file" in err
    good = tmp_path / "good.json"
    good.write_text(json.dumps(make_config(UC).to_dict()))
    code, _, err = cli(
        "publish",
        UC,
        "--file",
        str(good),
        "--reason",
        "r",
        "--expected-version",
        "4",
        "--as",
        "ops",
    )
    assert code == 1 and "StaleVersionError" in err
    code, _, err = cli(
        "publish", UC, "--file", str(good), "--reason", "r", "--guardrails", "srm", "--as", "alice"
    )
    assert code == 1 and "name=pass|fail" in err
    code, _, err = cli("history", UC)
    assert code == 1 and "no history" in err


def test_writes_are_refused_until_init_which_writes_a_private_file(
    cli: Any, settings: Settings, make_config: Any, tmp_path: Path
) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(make_config(UC).to_dict()))
    code, _, err = cli("publish", UC, "--file", str(good), "--reason", "r")
    assert code == 1 and err.count("\n") == 1 and "llmopt registry init" in err
    code, out, _ = cli("init", "--principal", "dana")
    path = settings.home / "var" / "registry" / "tokens.toml"
    assert code == 0 and str(path) in out
    assert path.stat().st_mode & 0o777 == 0o600
    token = path.read_text().split('token = "')[1].split('"')[0]
    assert len(token) >= 40 and token not in out  # the secret is never printed
    code, doc, _ = cli("publish", UC, "--file", str(good), "--reason", "r", "--json")
    assert code == 0 and doc["created_by"] == "dana"  # the only principal acts
    code, _, err = cli("init", "--principal", "dana")
    assert code == 1 and "exists" in err


def test_roles_and_four_eyes_on_the_command_line(
    cli: Any, people: None, make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uc = "refund-policy"  # not listed in registry.toml: the defaults apply (human, four eyes)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(make_config(uc).to_dict()))
    code, _, err = cli("publish", uc, "--file", str(good), "--reason", "r", "--as", "bob")
    assert code == 1 and "lacks the 'propose' role" in err
    code, doc, _ = cli("publish", uc, "--file", str(good), "--reason", "r", "--as", "ops", "--json")
    assert code == 0 and doc["created_by"] == "ops"
    code, _, err = cli("approve", uc, "1", "--comment", "mine", "--as", "ops")
    assert code == 1 and "FourEyesError" in err and "ops" in err
    tokens = (Path(str(tmp_path)) / "var" / "registry" / "tokens.toml").read_text()
    bob_token = tokens.split('[principals."bob"]')[1].split('token = "')[1].split('"')[0]
    monkeypatch.setenv("LLMOPT_REGISTRY_TOKEN", bob_token)  # the token decides who acts
    code, doc, _ = cli("approve", uc, "1", "--comment", "second pair of eyes", "--json")
    assert code == 0 and doc["state"] == "approved"
    monkeypatch.delenv("LLMOPT_REGISTRY_TOKEN")
    code, _, err = cli("promote", uc, "1", "--comment", "go", "--as", "carol",
                       "--expected-production", "3")  # fmt: skip
    assert code == 1 and "PreconditionFailedError" in err
    code, doc, _ = cli("promote", uc, "1", "--comment", "go", "--as", "carol",
                       "--expected-production", "none", "--json")  # fmt: skip
    assert code == 0 and doc["state"] == "production"
    code, entries, _ = cli("history", uc, "--json")
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("publish", "ops"), ("approve", "bob"), ("promote", "carol"),
    ]  # fmt: skip


def test_history_shows_the_night_each_version_was_computed_for_beside_the_time(
    cli: Any, people: None, make_config: Any, tmp_path: Path
) -> None:
    config = make_config(UC, weights=(0.9, 0.1)).to_dict()
    config["metadata"] = {"run_key": "night-2026-10-21"}
    nightly = tmp_path / "nightly.json"
    nightly.write_text(json.dumps(config))
    by_hand = tmp_path / "by-hand.json"
    by_hand.write_text(json.dumps(make_config(UC, weights=(0.8, 0.2)).to_dict()))
    for path in (nightly, by_hand):
        code, _, err = cli("publish", UC, "--file", str(path), "--reason", "r", "--as", "alice")
        assert code == 0, err
    code, entries, _ = cli("history", UC, "--json")
    assert code == 0
    assert {(e["version"], e["night"]) for e in entries} == {(1, "2026-10-21"), (2, "-")}
    assert all(e["at"] for e in entries)  # the execution time stays beside the night
    code, text, _ = cli("history", UC)
    header, first = text.splitlines()[:2]
    assert header.startswith("night") and "time (UTC)" in header
    assert first.startswith("2026-10-21  ")
