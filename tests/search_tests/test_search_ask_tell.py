"""Ask / tell semantics on a real (tmp SQLite) Optuna storage: pending, told, pruned, reloaded."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from strategies.search import (
    PRESETS,
    ConfigStats,
    NSGAIISearch,
    RandomSearch,
    RewardWeights,
    TPESearch,
    ask_candidates,
    pending_candidates,
    tell_ready_trials,
    weights_for,
)
from strategies.search_space import ForbiddenCombination, SearchSpace
from tasks.core.config import ConfigError
from tasks.search.study import delete_study, load_or_create_study, open_storage, redact_url

DAY = dt.date(2026, 10, 5)
SPACE = SearchSpace(models=("a", "b"), prompt_ids=("p1", "p2"), max_tokens=(64, 128))


def _stats(key: str, n: int, quality: float, seed: int = 0, cost: float = 0.002) -> ConfigStats:
    rng = np.random.default_rng(seed)
    return ConfigStats.from_samples(
        key,
        quality=np.clip(rng.normal(quality, 0.1, n), 0, 1),
        cost=rng.gamma(4.0, cost / 4.0, n),
        latency=rng.lognormal(np.log(800), 0.4, n),
        success=rng.random(n) > 0.02,
    )


@pytest.fixture
def sqlite_storage(tmp_path: Path) -> optuna.storages.RDBStorage:
    return open_storage(f"sqlite:///{tmp_path / 'studies' / 'optuna.sqlite'}")


@pytest.fixture
def storage() -> optuna.storages.BaseStorage:
    """In-memory: same Optuna semantics, no disk commits (SQLite is covered separately)."""
    return optuna.storages.InMemoryStorage()


def test_trials_without_enough_traffic_stay_running_without_a_value(
    sqlite_storage: optuna.storages.BaseStorage,
) -> None:
    strategy = TPESearch(seed=1)
    study = load_or_create_study(sqlite_storage, name="uc:single", strategy=strategy)
    asked = ask_candidates(study, SPACE, strategy=strategy, n=3, as_of=DAY)
    assert len(asked.candidates) == 3 and not asked.shortfall_reason
    ids = [c.config_id for c in asked.candidates]
    assert len(set(ids)) == 3
    observed = {ids[0]: _stats(ids[0], 299, 0.8), ids[1]: _stats(ids[1], 300, 0.7, seed=1)}
    outcomes = tell_ready_trials(
        study, observed, strategy=strategy, min_requests=300, as_of=DAY + dt.timedelta(days=1)
    )
    by_id = {o.config_id: o for o in outcomes}
    assert by_id[ids[0]].status == "pending" and by_id[ids[0]].values is None
    assert "299 of 300" in by_id[ids[0]].reason
    assert by_id[ids[2]].status == "pending" and by_id[ids[2]].n == 0
    told = by_id[ids[1]]
    assert told.status == "told"
    assert told.values == pytest.approx((PRESETS["balanced"].score_stats(observed[ids[1]]),))
    states = {t.user_attrs["config_id"]: t.state for t in study.trials}
    assert states == {
        ids[0]: TrialState.RUNNING,
        ids[1]: TrialState.COMPLETE,
        ids[2]: TrialState.RUNNING,
    }
    complete = study.trials[asked.candidates[1].trial_number]
    assert told.values is not None
    assert complete.values[0] == pytest.approx(told.values[0])
    assert complete.user_attrs["n"] == 300 and complete.user_attrs["told_on"] == "2026-10-06"
    assert [c.config_id for c in pending_candidates(study)] == [ids[0], ids[2]]


def test_reward_matches_the_documented_formula() -> None:
    s = _stats("k", 500, 0.75, seed=4, cost=0.004)
    w = weights_for("cost-focused", {"latency": 0.05})
    expected = (
        0.4 * s.quality_mean
        - 0.5 * s.cost_mean / 0.1
        - 0.05 * s.latency_p95 / 5000
        - 0.4 * s.error_rate
    )
    assert w.score_stats(s) == pytest.approx(expected)
    with pytest.raises(ValueError, match="unknown preset"):
        weights_for("cheap")
    with pytest.raises(ValueError, match="unknown weight keys"):
        weights_for("balanced", {"speed": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        RewardWeights(cost=-1.0)


def test_forbidden_suggestions_are_pruned_with_reason_and_never_served(
    storage: optuna.storages.BaseStorage,
) -> None:
    space = SearchSpace(
        models=("a", "b"),
        prompt_ids=("p1",),
        max_tokens=(64,),
        forbidden=(ForbiddenCombination(reason="model a is not approved", models=("a",)),),
    )
    strategy = RandomSearch(seed=5)
    study = load_or_create_study(storage, name="uc:forbidden", strategy=strategy)
    asked = ask_candidates(study, space, strategy=strategy, n=6, as_of=DAY)
    assert asked.candidates, "model b must still be suggested"
    assert all(c.params["model"] == "b" for c in asked.candidates)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, "a random sampler over two models must hit the forbidden one"
    assert all(t.params["model"] == "a" for t in pruned)
    assert all(t.user_attrs["reason"] == "model a is not approved" for t in pruned)
    assert {r.state for r in asked.rejected} >= {"pruned"}
    served = {c.config_id for c in pending_candidates(study)}
    assert not served & {t.user_attrs["config_id"] for t in pruned}


def test_exhausted_space_says_so_and_duplicates_are_not_served_twice(
    storage: optuna.storages.BaseStorage,
) -> None:
    tiny = SearchSpace(
        models=("a",), prompt_ids=("p",), max_tokens=(8,), temperature=(0.0, 0.05), top_p=(1.0, 1.0)
    )
    strategy = RandomSearch(seed=2)
    study = load_or_create_study(storage, name="uc:tiny", strategy=strategy)
    asked = ask_candidates(study, tiny, strategy=strategy, n=4, as_of=DAY)
    assert len(asked.candidates) == 2  # only two grid points exist
    assert "only 2 of 4" in asked.shortfall_reason
    assert all(r.state == "failed" for r in asked.rejected)
    first = asked.candidates[0].config_id
    tell_ready_trials(
        study, {first: _stats(first, 400, 0.6)}, strategy=strategy, min_requests=300, as_of=DAY
    )
    again = ask_candidates(study, tiny, strategy=strategy, n=2, as_of=DAY)
    judged = [r for r in again.rejected if r.state == "complete"]
    assert judged and all(r.config_id == first for r in judged)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len({t.values[0] for t in done}) == 1  # duplicates carry the observed value


def test_unserved_candidates_fail_after_max_pending_days(
    storage: optuna.storages.BaseStorage,
) -> None:
    strategy = TPESearch(seed=3)
    study = load_or_create_study(storage, name="uc:stale", strategy=strategy)
    ask_candidates(study, SPACE, strategy=strategy, n=2, as_of=DAY)
    week = DAY + dt.timedelta(days=7)
    kept = tell_ready_trials(
        study, {}, strategy=strategy, min_requests=300, as_of=week, max_pending_days=7
    )
    assert {o.status for o in kept} == {"pending"}
    later = tell_ready_trials(
        study,
        {},
        strategy=strategy,
        min_requests=300,
        as_of=week + dt.timedelta(days=1),
        max_pending_days=7,
    )
    assert {o.status for o in later} == {"failed"}
    assert all(
        t.state == TrialState.FAIL and "not served" in t.user_attrs["reason"] for t in study.trials
    )


def test_study_persists_across_reloads_and_nights_do_not_replay_draws(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.sqlite'}"
    strategy = TPESearch(seed=11)
    first = load_or_create_study(open_storage(url), name="uc:reload", strategy=strategy)
    night1 = ask_candidates(first, SPACE, strategy=strategy, n=3, as_of=DAY)
    del first
    reloaded = load_or_create_study(open_storage(url), name="uc:reload", strategy=strategy)
    assert [c.config_id for c in pending_candidates(reloaded)] == [
        c.config_id for c in night1.candidates
    ]
    night2 = ask_candidates(reloaded, SPACE, strategy=strategy, n=3, as_of=DAY)
    assert not {c.config_id for c in night2.candidates} & {c.config_id for c in night1.candidates}
    assert strategy.round_seed(0) != strategy.round_seed(3)
    with pytest.raises(ConfigError, match="directions"):
        load_or_create_study(open_storage(url), name="uc:reload", strategy=NSGAIISearch(seed=1))
    assert delete_study(url, "uc:reload") is True
    assert delete_study(url, "uc:reload") is False


def test_multi_objective_tells_quality_cost_latency_and_best_uses_the_weights(
    storage: optuna.storages.BaseStorage,
) -> None:
    strategy = NSGAIISearch(seed=4, weights=PRESETS["quality-focused"])
    study = load_or_create_study(storage, name="uc:multi", strategy=strategy)
    asked = ask_candidates(study, SPACE, strategy=strategy, n=3, as_of=DAY)
    ids = [c.config_id for c in asked.candidates]
    observed = {
        ids[0]: _stats(ids[0], 400, 0.90, seed=1, cost=0.02),  # best quality, pricey
        ids[1]: _stats(ids[1], 400, 0.60, seed=2, cost=0.0005),  # cheap
        ids[2]: _stats(ids[2], 400, 0.58, seed=1, cost=0.02),  # dominated by ids[0]
    }
    outcomes = tell_ready_trials(study, observed, strategy=strategy, min_requests=300, as_of=DAY)
    for o in outcomes:
        s = observed[o.config_id]
        assert o.values == pytest.approx((s.quality_mean, s.cost_mean, s.latency_p95))
    pareto = {t.user_attrs["config_id"] for t in study.best_trials}
    assert ids[2] not in pareto
    best = strategy.best(study)
    assert best is not None and best.config_id == ids[0]
    assert math.isclose(best.score, PRESETS["quality-focused"].score_stats(observed[ids[0]]))
    cheap = NSGAIISearch(seed=4, weights=weights_for("cost-focused", {"cost": 5.0}))
    assert (cheap_best := cheap.best(study)) is not None and cheap_best.config_id == ids[1]


def test_storage_urls_are_reported_without_passwords() -> None:
    assert (
        redact_url("postgresql+psycopg://u:secret@db:5432/x")
        == "postgresql+psycopg://u:***@db:5432/x"
    )
    assert redact_url("postgresql+psycopg://u@db/x") == "postgresql+psycopg://u@db/x"
    assert redact_url("sqlite:////tmp/a.sqlite") == "sqlite:////tmp/a.sqlite"


def test_suggestions_already_observed_in_the_warehouse_are_told_at_once(
    storage: optuna.storages.BaseStorage,
) -> None:
    tiny = SearchSpace(
        models=("a",),
        prompt_ids=("p",),
        max_tokens=(8,),
        temperature=(0.0, 0.05),
        top_p=(1.0, 1.0),
    )
    ids = [p.config_id for p in tiny.grid()]
    observed = {ids[0]: _stats(ids[0], 500, 0.7), ids[1]: _stats(ids[1], 100, 0.9, seed=1)}
    strategy = RandomSearch(seed=8)
    study = load_or_create_study(storage, name="uc:observed", strategy=strategy)
    asked = ask_candidates(
        study, tiny, strategy=strategy, n=2, as_of=DAY, observed=observed, min_requests=300
    )
    assert [c.config_id for c in asked.candidates] == [ids[1]]  # 100 < 300: must be served
    at_once = [r for r in asked.rejected if r.state == "complete"]
    assert at_once and {r.config_id for r in at_once} == {ids[0]}
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done[0].values[0] == pytest.approx(PRESETS["balanced"].score_stats(observed[ids[0]]))
    with pytest.raises(ValueError, match="min_requests"):
        ask_candidates(study, tiny, strategy=strategy, n=1, as_of=DAY, observed=observed)
