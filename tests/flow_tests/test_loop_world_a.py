"""World (a) of issue 12, through the real nightly flow: logged random routing, no experiment.

A use case was routed at random between a strong, expensive model and a weak, cheap one, with the
propensities logged; nobody configured an experiment. The cheap model is production (the first
night bootstraps it under the cost-focused objective). When the owner switches the use case to the
quality-focused objective, the flow must find from the logs alone that the strong model beats
production, propose it with its evidence, pass approval and walk the staged rollout to production.
Under the cost-focused objective it must not. Everything asserted is read from the registry the
flow published; the world's exact truth only grades (which model is better on each objective).
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tasks.core.settings import load_settings
from tasks.simulation.worlds_routing import RoutingWorld, Segment

pytestmark = pytest.mark.slow

UC = "support-route"
START = dt.date(2026, 10, 1)
DAYS = 10
STRONG_PER_NIGHT = 300  # logged requests of the strong model per day, in both routings
# this owner accepts the strong model's slower answers
LATENCY_RATIO_LIMIT = 2.0


def _world(strong_share: float) -> RoutingWorld:
    return RoutingWorld(
        use_case=UC,
        segments=(Segment(name="all", share=1.0, strong_quality=0.82, weak_quality=0.72),),
        strong_propensity=strong_share,
        requests_per_day=int(STRONG_PER_NIGHT / strong_share),
        days=DAYS,
        start=START,
        seed=int(strong_share * 100),
    )


def _truth_prefers_strong(world: RoutingWorld, preset: str) -> bool:
    """Grading only: the exact truth of each model on the preset.

    The world knows mean latency exactly, not p95; the gap between the models is wide enough that
    both readings of the latency term agree (p95 only widens the strong model's penalty).
    """
    from strategies.search import PRESETS

    w = PRESETS[preset]
    coef = (w.quality, -w.cost / w.cost_scale_usd, -w.latency / w.latency_scale_ms, -w.errors)
    strong = world.policy_value({"*": {world.strong.config_id: 1.0}}, coefficients=coef)
    weak = world.policy_value({"*": {world.weak.config_id: 1.0}}, coefficients=coef)
    return strong > weak


def _run(
    tmp: Path,
    home: Any,
    world: RoutingWorld,
    presets: list[str],
    *,
    error_rate_margin: float = 0.01,
) -> list[dict[str, Any]]:
    """One flow run per night; the registry's production after each."""
    logs = tmp / "logs.parquet"
    pq.write_table(world.simulate(), logs)
    nights = []
    for index, preset in enumerate(presets):
        home.write_nightly(
            preset, latency_ratio_limit=LATENCY_RATIO_LIMIT, error_rate_margin=error_rate_margin
        )
        summary = home.night(START + dt.timedelta(days=index), [logs])
        view = home.registry_view(UC)
        nights.append({**view, "summary": summary["use_cases"][UC]})
    return nights


@pytest.mark.parametrize("strong_share", [0.5, 0.2])
def test_quality_focused_promotes_the_strong_model_through_approval_and_rollout(
    prefect_server: None, tmp_path: Path, loop_home: Any, strong_share: float
) -> None:
    world = _world(strong_share)
    assert _truth_prefers_strong(world, "quality-focused")
    assert not _truth_prefers_strong(world, "cost-focused")
    nights = _run(tmp_path, loop_home, world, ["cost-focused"] + ["quality-focused"] * (DAYS - 1))
    strong, weak = world.strong.config_id, world.weak.config_id

    # night 0: bootstrapped on the cost-focused objective's lower bound (the weak model)
    assert nights[0]["production"] == weak
    assert "best on cost-focused" in " ".join(nights[0]["summary"]["reasons"])
    # night 1: the logs show the strong model beats production -> proposal, approved, 5% stage
    proposal = nights[1]
    assert proposal["rollout"]["candidate_config_id"] == strong
    assert proposal["rollout"]["stage_index"] == 0
    loop = proposal["summary"]["loop"]
    assert loop["objective"] == "quality-focused" and loop["promotion"] == "propose"
    assert (
        loop["best_alternative"] == strong and loop["best_alternative_difference_interval"][0] > 0
    )
    evidence = proposal["versions"][-1].evidence
    assert evidence["method"] == "sequential" and evidence["rows_used"] > 0
    assert evidence["candidate"]["config_key"] == strong
    proposed_version = proposal["versions"][-1].version
    assert (proposed_version, "approve", "auto-approval") in proposal["audit"]
    # then the stages follow the evidence, and the strong model is production
    reached = [i for i, n in enumerate(nights) if n["production"] == strong]
    assert reached, [n["summary"]["headline"] for n in nights]
    # The nights the traffic allows: the proposal night, then per stage (5%, 25%, 50%) the
    # nights until the candidate has the sample its guardrails ask for. With no errors logged the
    # error-rate margin (0.01) asks for at most ~500 requests: two nights of 300.
    nights_per_stage = math.ceil(500 / STRONG_PER_NIGHT)
    assert reached[0] <= 1 + 3 * nights_per_stage
    holds = [n["summary"]["reasons"] for n in nights[2 : reached[0] + 1]]
    assert not any("stopped" in r or "harm" in r for night in holds for r in night)
    stages = [n["rollout"]["stage_index"] for n in nights[1 : reached[0]] if n["rollout"]]
    assert stages == sorted(stages) and sorted(set(stages)) == [0, 1, 2]  # every stage, in order
    assert nights[-1]["production"] == strong and nights[-1]["rollout"] is None


def test_cost_focused_keeps_the_cheap_model(
    prefect_server: None, tmp_path: Path, loop_home: Any
) -> None:
    world = _world(0.5)
    nights = _run(tmp_path, loop_home, world, ["cost-focused"] * 5)
    weak = world.weak.config_id
    assert all(n["production"] == weak for n in nights)
    assert all(n["rollout"] is None for n in nights)
    loops = [n["summary"]["loop"] for n in nights[1:]]
    assert all(loop["promotion"] == "none" for loop in loops)
    assert all(loop["objective"] == "cost-focused" for loop in loops)
    assert loops[-1]["best_alternative_difference"] < 0  # the strong model is worse here


def test_a_stage_that_cannot_gather_its_sample_stops_and_says_so(
    prefect_server: None, tmp_path: Path, loop_home: Any
) -> None:
    """Issue 14: not enough evidence is a stop with the numbers, never a failed guardrail."""
    world = _world(0.5)
    nights = _run(
        tmp_path,
        loop_home,
        world,
        ["cost-focused", "quality-focused", "quality-focused"],
        error_rate_margin=0.001,
    )
    assert nights[1]["rollout"]["candidate_config_id"] == world.strong.config_id
    stopped = nights[2]
    assert stopped["production"] == world.weak.config_id and stopped["rollout"] is None
    published = stopped["versions"][-1]
    assert "stopped: not enough traffic at 5%:" in published.reason
    assert " of " in published.reason and "requests" in published.reason
    text = " ".join(
        [stopped["summary"]["headline"], *stopped["summary"]["reasons"], published.reason]
    )
    assert "guardrails failed" not in text and "harm" not in text
    # the candidate that just stopped is not proposed again the same night
    assert "its rollout ended tonight" in " ".join(stopped["summary"]["reasons"])
    # MLflow says the same: the use case's run of that night is tagged with what happened
    from tasks.nightly.tracking import Tracker

    tracker = Tracker(load_settings())
    runs = tracker.client.search_runs(
        [tracker.experiment_id()],
        filter_string=f"tags.use_case = '{UC}' and tags.as_of = '2026-10-03' "
        "and tags.rollout_step = 'stop'",
    )
    assert runs, "no MLflow run tagged rollout_step=stop for the night"
    tags = runs[0].data.tags
    assert tags["rollout_reason"].startswith("stopped: not enough traffic at 5%:")
    assert tags["objective"] == "quality-focused"
    assert (
        runs[0].data.metrics["objective_best_alternative_value"]
        > (runs[0].data.metrics["objective_production_value"])
    )
