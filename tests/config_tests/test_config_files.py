"""The configuration a user gets: per-file lookup, strict checks naming file and line, no demo."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from strategies.monitor.anomaly import AnomalyThresholds
from strategies.monitor.degradation import DegradationRules, RecoveryPolicy
from strategies.monitor.drift import DriftThresholds
from strategies.rollout_guard import RolloutGuard
from tasks.allocation.budget import DEFAULTS as BUDGET_DEFAULTS
from tasks.allocation.budget import use_case_settings
from tasks.core.config import CONFIG_NAMES, ConfigError, check_config, config_path, load_config
from tasks.core.config_schema import SCHEMAS
from tasks.core.settings import DEFAULT_CONFIG_DIR, Settings, load_settings
from tasks.experiments.spec import _SPEC_KEYS
from tasks.monitoring.run import MonitoringConfig, load_monitoring_config
from tasks.registry.policy import ApprovalPolicy, load_policies, policy_for
from tasks.search.space import _SEARCH_KEYS, load_search_config, resolve_space
from tasks.simulation.demo_config import DEMO_CONFIG_DIR
from tasks.simulation.world import AA_EXPERIMENT_ID, AB_EXPERIMENT_ID, USE_CASE_NAMES


def user_settings(home: Path) -> Settings:
    """A user's settings: their home, no LLMOPT_CONFIG_DIR (so ``<home>/config``)."""
    return load_settings(env={"LLMOPT_HOME": str(home)})


def _words(value: Any) -> set[str]:
    """Every key and string value of a parsed TOML document (comments are not in it)."""
    if isinstance(value, dict):
        return {str(k) for k in value} | {w for v in value.values() for w in _words(v)}
    if isinstance(value, list):
        return {w for v in value for w in _words(v)}
    return {value} if isinstance(value, str) else set()


def test_config_folder_defaults_to_the_home_then_the_shipped_defaults(tmp_path: Path) -> None:
    settings = user_settings(tmp_path)
    assert settings.config_dirs() == (tmp_path.resolve() / "config", DEFAULT_CONFIG_DIR)
    assert config_path("registry", settings) == DEFAULT_CONFIG_DIR / "registry.toml"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "registry.toml").write_text('[defaults]\napproval = "auto"\n')
    # per file: registry from the home, everything else still from the shipped defaults
    assert config_path("registry", settings) == tmp_path.resolve() / "config" / "registry.toml"
    assert config_path("budget", settings) == DEFAULT_CONFIG_DIR / "budget.toml"
    assert load_config("registry", settings) == {"defaults": {"approval": "auto"}}


def test_shipped_defaults_name_nothing_from_the_simulator() -> None:
    demo_names = {*USE_CASE_NAMES, AB_EXPERIMENT_ID, AA_EXPERIMENT_ID}
    demo_models = set(
        tomllib.loads((DEMO_CONFIG_DIR / "search.toml").read_text())["space"]["models"]
    )
    for name in CONFIG_NAMES:
        doc = load_config(name, load_settings(env={"LLMOPT_CONFIG_DIR": str(DEFAULT_CONFIG_DIR)}))
        leaked = _words(doc) & (demo_names | demo_models)
        assert leaked == set(), f"data/config/{name}.toml names demo entries: {sorted(leaked)}"


def test_user_use_case_named_like_a_demo_one_gets_none_of_the_demo_settings(
    tmp_path: Path,
) -> None:
    """issue 14: a user's ``support-summarize`` must not inherit the demo's auto-promotion,
    budget, rules, prompts or experiments."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "monitoring.toml").write_text(
        '[use_cases."support-summarize".rules]\nlatency_p95_slo_ms = 9000\n'
    )
    settings = user_settings(tmp_path)
    demo = load_settings(
        env={"LLMOPT_HOME": str(tmp_path), "LLMOPT_CONFIG_DIR": str(DEMO_CONFIG_DIR)}
    )
    use_case = "support-summarize"

    # the demo itself does set these (so the assertions below can fail)
    assert policy_for(use_case, demo).approval == "auto"
    assert use_case_settings(load_config("budget", demo), use_case)["monthly_budget_usd"] == 800.0

    policy = policy_for(use_case, settings)
    assert policy.approval == "human" and policy.auto_promote is False
    assert (
        use_case_settings(load_config("budget", settings), use_case)["monthly_budget_usd"] is None
    )
    rules = load_monitoring_config(settings).rules_for(use_case)
    assert rules.latency_p95_slo_ms == 9000  # the user's own setting applies
    assert rules.error_rate_max == DegradationRules().error_rate_max  # not the demo's 0.04
    assert load_config("experiments", settings).get("experiments", {}) == {}
    logged = pd.DataFrame({"model": ["my-model"], "prompt_id": ["my-prompt"], "max_tokens": [256]})
    space = resolve_space(load_search_config(settings), use_case, logged_configs=logged)
    assert space.models == ("my-model",) and space.prompt_ids == ("my-prompt",)
    assert space.max_tokens == (256,) and space.forbidden == ()
    for name in CONFIG_NAMES:
        assert DEMO_CONFIG_DIR not in config_path(name, settings).parents


def _write(tmp_path: Path, name: str, text: str) -> Settings:
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.toml").write_text(text)
    return user_settings(tmp_path)


def test_forgotten_defaults_header_in_registry_is_an_error_with_file_and_line(
    tmp_path: Path,
) -> None:
    settings = _write(tmp_path, "registry", '# my policy\napproval = "auto"\nauto_promote = true\n')
    with pytest.raises(ConfigError) as info:
        load_policies(settings)
    message = str(info.value)
    assert f"{tmp_path.resolve() / 'config' / 'registry.toml'}:2:" in message
    assert "'approval'" in message and "[defaults]" in message
    assert "and 1 more" in message  # auto_promote on line 3 too


@pytest.mark.parametrize(
    ("name", "text", "line", "words"),
    [
        ("registry", '[use_cases.checkout-bot]\napprovl = "auto"\n', 2, ["approvl", "approval"]),
        ("registry", '[defaults]\n\nauto_promote = "yes"\n', 3, ["true or false"]),
        ("registry", '[defaults]\napproval = "sometimes"\n', 2, ["'auto'", "'human'"]),
        (
            "monitoring",
            '[rules]\nmin_requests = 50\n[use_cases."x".rules]\nerror_rate_mx = 0.1\n',
            4,
            ["error_rate_mx"],
        ),
        (
            "search",
            '[[space.forbidden]]\nreason = "a"\n[[space.forbidden]]\nmodls = ["m"]\n',
            4,
            ["modls", "entry 2"],
        ),
        (
            "experiments",
            '[experiments."e-1"]\nweights = { control = "half" }\n',
            2,
            ["table of numbers"],
        ),
        (
            "nightly",
            "[traffic]\nrollout_stages = [0.1, 1.0]\nmax_exploration = 0.2\n",
            3,
            ["max_exploration"],
        ),
        (
            "budget",
            "[defaults]\nmonthly_budget_usd = 10\n[bandit]\nmonthly_budget_usd = 5\n",
            4,
            ["[defaults]"],
        ),
        ("budget", "[defaults\n", 1, ["line 1"]),
    ],
)
def test_every_file_is_checked_strictly_with_its_line(
    tmp_path: Path, name: str, text: str, line: int, words: list[str]
) -> None:
    settings = _write(tmp_path, name, text)
    path, problems = check_config(name, settings)
    assert path == tmp_path.resolve() / "config" / f"{name}.toml"
    assert [p.line for p in problems][:1] == [line]
    for word in words:
        assert word in problems[0].message
    with pytest.raises(ConfigError, match=f"{name}.toml"):
        load_config(name, settings)


@pytest.mark.parametrize("folder", [DEFAULT_CONFIG_DIR, DEMO_CONFIG_DIR])
def test_shipped_and_demo_files_fit_the_schema(folder: Path) -> None:
    settings = load_settings(env={"LLMOPT_CONFIG_DIR": str(folder)})
    for name in CONFIG_NAMES:
        assert check_config(name, settings)[1] == []


def _keys(*path: str, name: str) -> set[str]:
    section = SCHEMAS[name]
    for part in path:
        section = section.each_use_case if part == "*" else section.sections[part]  # type: ignore[assignment]
    return set(section.keys)


def _fields(cls: type[Any]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_schema_matches_what_the_capabilities_accept() -> None:
    """A key a capability adds must be declared in tasks/core/config_schema.py (and back)."""
    assert _keys("rules", name="monitoring") == _fields(DegradationRules)
    assert _keys("policy", name="monitoring") == _fields(RecoveryPolicy)
    assert _keys("anomaly", name="monitoring") == _fields(AnomalyThresholds) | {"alert"}
    assert _keys("notifier", name="monitoring") == _fields(type(MonitoringConfig().notifier))
    drift = _fields(DriftThresholds) | {"numeric", "categorical", "quantile_bins"}
    assert _keys("drift", name="monitoring") == drift
    assert _keys("windows", name="monitoring") <= _fields(MonitoringConfig)
    assert _keys("rollout", name="nightly") == _fields(RolloutGuard) | {"max_holds"}
    assert _keys("defaults", name="experiments") == _SPEC_KEYS
    assert _keys("search", name="search") == _SEARCH_KEYS
    assert _keys("defaults", name="registry") == _fields(ApprovalPolicy)
    assert _keys("defaults", name="budget") == set(BUDGET_DEFAULTS)


def test_a_malformed_nightly_file_fails_and_only_a_missing_one_means_defaults(
    tmp_path: Path,
) -> None:
    from tasks.core.config import ConfigNotFoundError
    from tasks.nightly.night import NightOptions

    settings = _write(tmp_path, "nightly", "[traffic]\nmax_exploration = 0.5\n")
    with pytest.raises(ConfigError, match=r"nightly.toml:2: unknown key 'max_exploration'"):
        NightOptions.from_parameters({}, settings)
    nowhere = dataclasses.replace(
        settings, config_dir=tmp_path / "none", default_config_dir=tmp_path / "none"
    )
    with pytest.raises(ConfigNotFoundError):
        load_config("nightly", nowhere)
    assert NightOptions.from_parameters({}, nowhere).policy.max_exploration_share == 0.10
