"""``llmopt config check`` and ``llmopt init`` on a user's own logs and configuration folder."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tasks.core.config import CONFIG_NAMES, check_config
from tasks.core.settings import load_settings
from tasks.ingest.pipeline import ingest_paths


def _user_logs(path: Path) -> Path:
    """Two of the user's own use cases (one named like a demo one), an experiment, optional
    fields missing on many rows (no config_id, no cost, no quality)."""
    rows = []
    for i in range(120):
        use_case = "checkout-bot" if i % 2 else "support-summarize"
        row = {
            "request_id": f"r-{i}",
            "timestamp": f"2026-11-{1 + i % 20:02d}T10:{i % 60:02d}:00Z",
            "use_case": use_case,
            "model": "gpt-4o-mini",
            "input_tokens": 300 + i,
            "output_tokens": 80,
            "latency_ms": 900.0 + 10 * i,
            "status": "success",
        }
        if use_case == "checkout-bot":
            row |= {
                "prompt_id": "checkout-v1",
                "max_tokens": 256,
                "experiment_id": "exp-checkout-tone",
                "variant_id": "control" if i % 4 == 1 else "friendly",
                "unit_id": f"u-{i}",
            }
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def user_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's logs ingested once for the module (each test copies the warehouse file)."""
    folder = tmp_path_factory.mktemp("user-logs")
    settings = load_settings(env={"LLMOPT_HOME": str(folder / "home")}).ensure_dirs()
    report = ingest_paths([_user_logs(folder / "logs.jsonl")], settings=settings)
    assert report.ingested == 120
    return settings.warehouse_path


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user_warehouse: Path) -> Path:
    """A fresh home with the user's warehouse and no configuration folder of its own yet."""
    home = tmp_path / "home"
    monkeypatch.setenv("LLMOPT_HOME", str(home))
    for name in ("LLMOPT_CONFIG_DIR", "LLMOPT_WAREHOUSE", "LLMOPT_SETTINGS_FILE"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings().ensure_dirs()
    shutil.copyfile(user_warehouse, settings.warehouse_path)
    return home


def _user_config(home: Path, **files: str) -> Path:
    """Write the user's configuration folder (``name=text`` per ``<name>.toml``); its path."""
    folder = home / "config"
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.toml").write_text(text)
    return folder


def test_init_writes_a_commented_config_for_the_warehouse_use_cases(
    user_home: Path, run_cli: Any
) -> None:
    code, out, _ = run_cli("init", "--json")
    assert code == 0
    result = json.loads(out)
    folder = user_home.resolve() / "config"
    assert result["folder"] == str(folder)
    assert result["use_cases"] == ["checkout-bot", "support-summarize"]
    assert sorted(Path(p).name for p in result["written"]) == [f"{n}.toml" for n in CONFIG_NAMES]
    budget = (folder / "budget.toml").read_text()
    assert '# [use_cases."checkout-bot"]' in budget and "spend over the last 30" in budget
    experiments = (folder / "experiments.toml").read_text()
    assert '# [experiments."exp-checkout-tone"]' in experiments
    assert "friendly" in experiments
    search = (folder / "search.toml").read_text()
    assert '# prompt_ids = ["checkout-v1"]' in search
    # commented tables: every written file is valid and changes nothing yet
    settings = load_settings()
    for name in CONFIG_NAMES:
        path, problems = check_config(name, settings)
        assert path.parent == folder and problems == []
        shipped = tomllib.loads((settings.default_config_dir / f"{name}.toml").read_text())
        assert tomllib.loads(path.read_text()) == shipped

    (folder / "registry.toml").write_text('[defaults]\napproval = "auto"\n')
    code, out, _ = run_cli("init")
    assert code == 0 and "kept" in out and "--force" in out
    assert (folder / "registry.toml").read_text() == '[defaults]\napproval = "auto"\n'


def test_config_check_prints_the_effective_config_per_use_case(
    user_home: Path, run_cli: Any
) -> None:
    folder = _user_config(
        user_home,
        registry='[defaults]\napproval = "human"\n\n'
        '[use_cases."checkout-bot"]\napproval = "auto"\n',
    )
    code, out, _ = run_cli("config", "check", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is True and report["problems"] == []
    assert report["files"]["registry"] == str(folder.resolve() / "registry.toml")
    assert report["files"]["budget"].endswith("data/config/budget.toml")
    by_name = report["use_cases"]
    assert set(by_name) == {"checkout-bot", "support-summarize"}
    assert by_name["checkout-bot"]["registry"]["approval"] == "auto"
    assert by_name["checkout-bot"]["requests_in_warehouse"] == 60
    summarize = by_name["support-summarize"]
    assert summarize["registry"]["approval"] == "human"
    assert "monthly_budget_usd" not in summarize["budget"]
    assert summarize["experiments"] == {}
    assert "prompt_ids" not in summarize["search"]["space"]

    code, out, _ = run_cli("config", "check")
    assert code == 0 and "Every file is valid." in out
    assert "checkout-bot (60 requests in the warehouse)" in out


def test_config_check_lists_every_problem_with_file_and_line_and_exits_1(
    user_home: Path, run_cli: Any
) -> None:
    folder = _user_config(
        user_home,
        registry='approval = "auto"\n',
        monitoring="[rules]\nerror_rate_max = 0.02\ncost_ratio = 3\n",
    )
    code, out, err = run_cli("config", "check")
    assert code == 1 and err == ""
    assert f"{folder.resolve() / 'registry.toml'}:1: unknown key 'approval'" in out
    assert f"{folder.resolve() / 'monitoring.toml'}:3: unknown key 'cost_ratio'" in out
    assert "2 problem(s)" in out


def test_config_check_reports_a_value_the_capability_refuses(user_home: Path, run_cli: Any) -> None:
    _user_config(user_home, monitoring="[windows]\nreference_days = 14\nseries_days = 7\n")
    code, out, _ = run_cli("config", "check", "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert any("monitoring.toml" in p and "series_days" in p for p in report["problems"])
