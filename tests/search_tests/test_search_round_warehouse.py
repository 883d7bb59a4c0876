"""The nightly round against a DuckDB warehouse fed by the simulator; SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from flows.cli_support import to_jsonable
from strategies.search import PRESETS
from tasks import simulation as sim
from tasks.core.settings import Settings
from tasks.search.study import (
    SearchConfig,
    delete_study,
    run_search_round,
    search_config_from_mapping,
    search_status,
)

USE_CASE = "support-summarize"
DAY0 = dt.date(2026, 10, 1)
SPEC = sim.SimulationSpec(include_cost=True)


def _config(**search: Any) -> SearchConfig:
    return search_config_from_mapping(
        {
            "search": {"n_candidates": 3, "min_requests": 300, "seed": 3, **search},
            "space": {"models": ["gpt-4o-mini", "gpt-4o", "claude-haiku-4-5"]},
            "use_cases": {
                USE_CASE: {
                    "use_global_models": True,  # a cold start: nothing logged yet
                    "space": {
                        "prompt_ids": ["summarize-v1", "summarize-v2"],
                        "max_tokens": [256, 512, 1024],
                    },
                }
            },
        }
    )


def _serve(
    con: Any,
    insert: Callable[[Any, pa.Table], int],
    params: dict[str, Any],
    *,
    config_id: str | None,
    n: int,
    day: int,
) -> None:
    cfg = {**params, **({"config_id": config_id} if config_id else {})}
    insert(con, sim.simulate_config_traffic(SPEC, USE_CASE, cfg, n, day, seed=day))


def _sql_reward(con: Any, config_id: str) -> float:
    q, cost, p95, err = con.execute(
        "SELECT avg(quality), avg(cost_usd), quantile_cont(latency_ms, 0.95), "
        "avg(CASE WHEN status = 'success' THEN 0 ELSE 1 END) FROM usage_logs "
        "WHERE config_id = ?",
        [config_id],
    ).fetchone()
    return PRESETS["balanced"].score(q, cost, p95, err)


def test_round_tells_observed_rewards_and_keeps_thin_trials_pending(
    settings: Settings, warehouse: Any, insert_logs: Callable[[Any, pa.Table], int]
) -> None:
    config = _config()
    night1 = run_search_round(settings, warehouse, use_case=USE_CASE, as_of=DAY0, config=config)
    assert night1.told == () and len(night1.new_candidates) == 3
    assert night1.storage.startswith("sqlite:///") and str(settings.home) in night1.storage
    c0, c1, c2 = night1.new_candidates
    _serve(warehouse, insert_logs, c0.params, config_id=c0.config_id, n=320, day=1)
    _serve(
        warehouse, insert_logs, c1.params, config_id=None, n=310, day=1
    )  # logged under the simulator's id
    _serve(
        warehouse, insert_logs, c2.params, config_id=c2.config_id, n=120, day=1
    )  # not enough yet

    night2 = run_search_round(
        settings, warehouse, use_case=USE_CASE, as_of=DAY0 + dt.timedelta(days=1), config=config
    )
    told = {t.config_id: t for t in night2.told}
    assert set(told) == {c0.config_id, c1.config_id}
    assert told[c0.config_id].n == 320
    assert told[c0.config_id].values == pytest.approx((_sql_reward(warehouse, c0.config_id),))
    sim_id = sim.config_id_for(USE_CASE, **c1.params)
    assert told[c1.config_id].values == pytest.approx((_sql_reward(warehouse, sim_id),))
    assert [(p.config_id, p.n) for p in night2.still_pending] == [(c2.config_id, 120)]
    assert len(night2.new_candidates) == 2  # back to 3 collecting traffic
    assert c2.config_id in night2.serve_config_ids and len(night2.serve_config_ids) == 3
    assert night2.best is not None and night2.best.config_id in told
    assert night2.trial_counts["COMPLETE"] == 2 and night2.trial_counts["RUNNING"] == 3
    json.dumps(to_jsonable(night2))  # the nightly flow logs it as a JSON artifact

    status = search_status(settings, config=config)
    assert [s.use_case for s in status] == [USE_CASE]
    assert status[0].best == night2.best
    assert {c.config_id for c in status[0].candidates} == set(night2.serve_config_ids)


def test_multi_objective_round_with_nsga2(
    settings: Settings,
    warehouse: Any,
    insert_logs: Callable[[Any, pa.Table], int],
    observed_objectives: Callable[[Any, str], tuple[float, float, float]],
) -> None:
    config = _config(sampler="nsga2", objective="multi", n_candidates=2)
    night1 = run_search_round(settings, warehouse, use_case=USE_CASE, as_of=DAY0, config=config)
    for cand in night1.new_candidates:
        _serve(warehouse, insert_logs, cand.params, config_id=cand.config_id, n=300, day=1)
    night2 = run_search_round(
        settings, warehouse, use_case=USE_CASE, as_of=DAY0 + dt.timedelta(days=1), config=config
    )
    assert night2.objective_names == ("quality", "cost_usd", "latency_p95_ms")
    for t in night2.told:
        assert t.values == pytest.approx(observed_objectives(warehouse, t.config_id))
    assert ":multi@" in night2.study_name  # one study generation per set of choices


@pytest.mark.postgres
def test_postgres_storage_round_and_reload(
    pg_url: str, settings: Settings, warehouse: Any, insert_logs: Callable[[Any, pa.Table], int]
) -> None:
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    config = dataclasses.replace(_config(study_prefix=prefix), storage=pg_url)
    name = f"{prefix}:{USE_CASE}:single"
    try:
        night1 = run_search_round(settings, warehouse, use_case=USE_CASE, as_of=DAY0, config=config)
        assert night1.study_name.startswith(f"{name}@")
        assert night1.storage.startswith("postgresql+psycopg://")
        first = night1.new_candidates[0]
        _serve(warehouse, insert_logs, first.params, config_id=first.config_id, n=300, day=1)
        night2 = run_search_round(
            settings,
            warehouse,
            use_case=USE_CASE,
            as_of=DAY0 + dt.timedelta(days=1),
            config=config,
        )
        assert [t.config_id for t in night2.told] == [first.config_id]
        status = search_status(settings, use_case=USE_CASE, config=config)
        assert status[0].exists and status[0].trial_counts["COMPLETE"] == 1
    finally:
        assert delete_study(pg_url, night1.study_name)


def test_a_model_that_appears_in_the_logs_mid_study_opens_a_generation_that_keeps_the_trials(
    settings: Settings, warehouse: Any, insert_logs: Callable[[Any, pa.Table], int]
) -> None:
    """The space comes from the use case's logs; Optuna cannot change a categorical's choices
    inside one study, so a new model starts a new generation with the earlier trials in it."""
    config = search_config_from_mapping(
        {
            "search": {"n_candidates": 2, "min_requests": 300, "seed": 3},
            "use_cases": {USE_CASE: {"space": {"prompt_ids": ["summarize-v1"]}}},
        }
    )
    production = {"model": "gpt-4o", "prompt_id": "summarize-v1", "temperature": 0.7,
                  "top_p": 1.0, "max_tokens": 512}  # fmt: skip
    _serve(warehouse, insert_logs, production, config_id=None, n=400, day=0)
    other = {**production, "temperature": 0.2, "max_tokens": 1024}  # the logs span a range
    _serve(warehouse, insert_logs, other, config_id=None, n=100, day=0)
    night1 = run_search_round(settings, warehouse, use_case=USE_CASE, as_of=DAY0, config=config)
    assert {c.params["model"] for c in night1.new_candidates} == {"gpt-4o"}
    served = night1.new_candidates[0]
    _serve(warehouse, insert_logs, served.params, config_id=served.config_id, n=300, day=1)
    # the team starts sending some traffic to a model the study has never seen
    newcomer = {**production, "model": "gpt-4o-mini"}
    _serve(warehouse, insert_logs, newcomer, config_id=None, n=300, day=1)

    night2 = run_search_round(
        settings, warehouse, use_case=USE_CASE, as_of=DAY0 + dt.timedelta(days=1), config=config
    )
    assert night2.study_name != night1.study_name
    assert [t.config_id for t in night2.told] == [served.config_id]  # carried, then told
    pending = {c.config_id for c in night1.new_candidates[1:]}
    assert pending <= {c.config_id for c in night2.candidates}  # still waiting for traffic
    status = search_status(settings, use_case=USE_CASE, config=config)
    assert status[0].exists and status[0].study_name == night2.study_name
