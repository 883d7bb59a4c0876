"""Search space: bounds, forbidden combinations, config ids, TOML parsing."""

from __future__ import annotations

import datetime as dt
import doctest
import importlib
import tomllib
from typing import Any

import duckdb
import optuna
import pandas as pd
import pytest

from strategies.search_space import (
    CandidateParams,
    ForbiddenCombination,
    SearchSpace,
    candidate_config_id,
)
from tasks.core.config import ConfigError
from tasks.core.settings import REPO_ROOT
from tasks.search.study import resolve_space, search_config_from_mapping
from tasks.warehouse.config_metrics import CONFIG_KEY_SQL

SPACE = SearchSpace(
    models=("small", "big"),
    prompt_ids=("p1", "p2"),
    max_tokens=(256, 2048),
    forbidden=(
        ForbiddenCombination(reason="small+long", models=("small",), max_tokens=(2048,)),
        ForbiddenCombination(reason="hot", temperature_range=(1.2, 1.5), top_p_range=(0.95, 1.0)),
    ),
)


def test_forbidden_rules_match_only_their_combination() -> None:
    assert SPACE.violations(CandidateParams("small", "p1", 0.5, 0.9, 2048)) == ("small+long",)
    assert SPACE.violations(CandidateParams("big", "p1", 0.5, 0.9, 2048)) == ()
    assert SPACE.violations(CandidateParams("small", "p1", 0.5, 0.9, 256)) == ()
    assert SPACE.violations(CandidateParams("big", "p2", 1.3, 0.95, 256)) == ("hot",)
    assert SPACE.violations(CandidateParams("big", "p2", 1.3, 0.9, 256)) == ()


def test_out_of_space_values_are_reported() -> None:
    reasons = SPACE.violations(CandidateParams("huge", "p9", 1.6, 0.4, 100))
    assert len(reasons) == 5
    assert any("huge" in r for r in reasons) and any("temperature" in r for r in reasons)


def test_grid_excludes_every_forbidden_point_and_counts_the_rest() -> None:
    grid = list(SPACE.grid())
    assert all(SPACE.violations(p) == () for p in grid)
    temps, tops = 31, 11  # 0..1.5 and 0.5..1.0 by 0.05
    hot = 7 * 2  # temperatures 1.2..1.5 x top_p 0.95, 1.0
    total = 2 * 2 * temps * tops * 2
    small_long = 2 * temps * tops  # small x 2048 x both prompts
    hot_not_small_long = 2 * 2 * hot * 2 - 2 * hot  # hot points minus those already small+long
    assert len(grid) == total - small_long - hot_not_small_long


def test_suggestions_stay_on_the_grid_and_inside_bounds() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(200):
        trial = study.ask()
        p = SPACE.suggest(trial)
        assert 0.0 <= p.temperature <= 1.5 and 0.5 <= p.top_p <= 1.0
        assert abs(p.temperature / 0.05 - round(p.temperature / 0.05)) < 1e-9
        assert p.model in SPACE.models and p.max_tokens in SPACE.max_tokens
        study.tell(trial, 0.0)


def test_candidate_config_id_equals_the_warehouse_fallback_key() -> None:
    con = duckdb.connect()
    params = [
        CandidateParams("gpt-4o", "summarize-v2", 0.7000000000000001, 0.95, 512),
        CandidateParams("claude-haiku-4-5", "classify-v1", 1.0, 1.0, 8),
        CandidateParams("gpt-4o-mini", "p", 0.05, 0.55, 1024),
        CandidateParams("gpt-4o-mini", "p", 0.0, 0.5, 64),
    ]
    for p in params:
        sql = (
            f"SELECT {CONFIG_KEY_SQL} FROM (SELECT NULL::VARCHAR AS config_id, ? AS model, "
            "? AS prompt_id, ?::DOUBLE AS temperature, ?::DOUBLE AS top_p, "
            "?::INTEGER AS max_tokens)"
        )
        row = con.execute(sql, [p.model, p.prompt_id, p.temperature, p.top_p, p.max_tokens])
        assert row.fetchone() == (candidate_config_id(p),)
    assert candidate_config_id(params[0]) == "gpt-4o|summarize-v2|t=0.7|p=0.95|mt=512"


def test_bad_space_definitions_are_rejected() -> None:
    with pytest.raises(ValueError, match="names no condition"):
        ForbiddenCombination(reason="x")
    with pytest.raises(ValueError, match="unknown keys"):
        SearchSpace.from_mapping(
            {"models": ["a"], "prompt_ids": ["p"], "max_tokens": [1], "temprature": [0, 1]}
        )
    with pytest.raises(ValueError, match="models must not be empty"):
        SearchSpace.from_mapping({"prompt_ids": ["p"], "max_tokens": [1]})
    with pytest.raises(ValueError, match="low <= high"):
        SearchSpace.from_mapping(
            {"models": ["a"], "prompt_ids": ["p"], "max_tokens": [1], "temperature": [1.0, 0.5]}
        )


def test_repo_search_toml_parses_and_resolves_every_use_case() -> None:
    with (REPO_ROOT / "tasks" / "simulation" / "demo_config" / "search.toml").open("rb") as handle:
        config = search_config_from_mapping(tomllib.load(handle))
    assert set(config.use_cases) == {
        "support-summarize",
        "ticket-classify",
        "sales-email",
        "code-review",
        "faq-answer",  # the demo story's two extra use cases (tasks/simulation/demo_story.py)
        "support-route",
    }
    logged = pd.DataFrame(
        {
            "model": ["gpt-4o-mini", "gpt-4o"],
            "prompt_id": ["review-v1"] * 2,
            "max_tokens": [512] * 2,
        }
    )
    space = resolve_space(config, "code-review", logged_configs=logged)
    assert space.models == ("gpt-4o", "gpt-4o-mini")
    assert len(space.forbidden) == 2
    blocked = CandidateParams("gpt-4o-mini", "review-v1", 0.3, 0.9, 2048)
    assert space.violations(blocked)
    with pytest.raises(ConfigError, match="unknown keys"):
        search_config_from_mapping({"search": {"n_candidate": 3}})


def test_models_default_to_those_in_the_warehouse() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE usage_logs (use_case VARCHAR, model VARCHAR, day DATE)")
    con.execute(
        "INSERT INTO usage_logs VALUES ('uc', 'm2', ?), ('uc', 'm1', ?), ('x', 'm3', ?)",
        [dt.date(2026, 10, 1)] * 3,
    )
    config = search_config_from_mapping(
        {"use_cases": {"uc": {"space": {"prompt_ids": ["p"], "max_tokens": [64]}}}}
    )
    assert resolve_space(config, "uc", con).models == ("m1", "m2")


def test_a_use_case_without_its_own_space_searches_what_it_has_logged() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE usage_logs (use_case VARCHAR, model VARCHAR, prompt_id VARCHAR, "
        "max_tokens INTEGER)"
    )
    con.execute(
        "INSERT INTO usage_logs VALUES ('new-uc', 'm1', 'p2', 256), ('new-uc', 'm1', 'p1', 64), "
        "('new-uc', 'm2', NULL, 256), ('other', 'm9', 'p9', 8)"
    )
    space = resolve_space(search_config_from_mapping({}), "new-uc", con)
    assert space.models == ("m1", "m2")
    assert space.prompt_ids == ("p1", "p2")
    assert space.max_tokens == (64, 256)


@pytest.mark.parametrize(
    "module", ["strategies.search", "strategies.search_space", "strategies.frontier"]
)
def test_docstring_examples_hold(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def _logged(**columns: list[Any]) -> pd.DataFrame:
    base: dict[str, list[Any]] = {
        "model": ["m-prod", "m-prod"],
        "prompt_id": ["p1", "p2"],
        "max_tokens": [256, 256],
        "temperature": [0.2, 0.4],
        "top_p": [1.0, 1.0],
    }
    return pd.DataFrame({**base, **columns})


SHARED = {
    "space": {
        "models": ["global-a", "global-b"],
        "prompt_ids": ["global-prompt"],
        "temperature": [0.0, 1.5],
        "top_p": [0.5, 1.0],
    },
}


def test_a_use_case_explores_what_it_has_used_and_what_its_config_names() -> None:
    config = search_config_from_mapping(
        {**SHARED, "use_cases": {"mine": {"space": {"models": ["m-new"]}}}}
    )
    space = resolve_space(config, "mine", logged_configs=_logged())
    assert space.models == ("m-new", "m-prod")  # logged + named, never the global list
    assert space.prompt_ids == ("p1", "p2")
    assert space.max_tokens == (256,)
    assert space.temperature == (0.2, 0.4)  # the range its logs show, not [0, 1.5]
    assert space.top_p == (1.0, 1.0)
    other = resolve_space(config, "unconfigured", logged_configs=_logged())
    assert other.models == ("m-prod",)


def test_the_global_model_list_applies_only_where_a_use_case_opts_in() -> None:
    config = search_config_from_mapping(
        {
            **SHARED,
            "use_cases": {
                "curious": {"use_global_models": True, "space": {"temperature": [0.0, 1.0]}}
            },
        }
    )
    space = resolve_space(config, "curious", logged_configs=_logged())
    assert space.models == ("global-a", "global-b", "m-prod")
    assert space.prompt_ids == ("global-prompt", "p1", "p2")
    assert space.temperature == (0.0, 1.0)  # its own setting wins
    assert config.global_opt_in == frozenset({"curious"})


def test_nothing_logged_and_nothing_named_is_a_clear_error() -> None:
    config = search_config_from_mapping(SHARED)
    with pytest.raises(ConfigError, match=r"'silent'.*models must not be empty"):
        resolve_space(config, "silent")
