"""The demo's story, at a small size: a promotion from logged evidence and a routing table.

``run_demo`` simulates the month and runs the real nightly flow night by night on the demo's
configuration (``tasks/simulation/demo_config``). The flow is told nothing about the story's two
use cases but their logs: ``faq-answer`` gets a better configuration in its logged random traffic
the day after the first night, and ``support-route`` is routed at random between two models whose
quality depends on ``user_segment``. Everything asserted is read from the registry the flow
published and the flow's summaries; the worlds' exact truth only grades what was found.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tasks.core.settings import load_settings
from tasks.simulation.demo_config import DEMO_CONFIG_DIR
from tasks.simulation.demo_story import (
    PROMOTION_USE_CASE,
    ROUTING_USE_CASE,
    promotion_world,
    routing_world,
)

pytestmark = pytest.mark.slow

DAYS, NIGHTS, ROWS_PER_DAY = 8, 3, 2000


@pytest.fixture(scope="module")
def demo(prefect_server: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One small demo run, and the registry's versions per use case afterwards."""
    from flows.demo import run_demo
    from tasks.registry.store import RegistryStore

    home = tmp_path_factory.mktemp("demo") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMOPT_HOME", str(home))
        mp.setenv("LLMOPT_CONFIG_DIR", str(DEMO_CONFIG_DIR))
        result = run_demo(days=DAYS, nights=NIGHTS, rows_per_day=ROWS_PER_DAY, home=home)
        store = RegistryStore.from_settings(load_settings())
        try:
            versions = {uc: store.versions_of(uc) for uc in store.use_cases()}
            audit = {
                uc: [(e.version, e.action, e.actor) for e in store.history(uc)] for uc in versions
            }
        finally:
            store.dispose()
    return result | {"versions": versions, "audit": audit}


def _item(night: dict[str, Any], use_case: str) -> dict[str, Any]:
    return night["use_cases"][use_case]


def test_the_demo_runs_every_night_without_failures(demo: dict[str, Any]) -> None:
    assert demo["failures"] == {}
    assert len(demo["nights"]) == NIGHTS
    assert {PROMOTION_USE_CASE, ROUTING_USE_CASE} <= set(demo["nights"][-1]["use_cases"])


def test_a_better_configuration_is_promoted_from_logged_evidence(demo: dict[str, Any]) -> None:
    start = dt.date(2026, 10, 1)
    world = promotion_world(start=start, days=DAYS, seed=7)
    production, candidate = world.strong.config_id, world.weak.config_id
    # grading only: the candidate is better on quality, cost and latency
    segment = world.segments[0]
    assert world.quality(segment, world.weak) > world.quality(segment, world.strong)
    assert world.cost(world.weak) < world.cost(world.strong)

    nights = demo["nights"]
    # the first night sees only production's logs and bootstraps it
    assert _item(nights[0], PROMOTION_USE_CASE)["production_config_id"] == production
    proposing = [
        n
        for n in nights
        if (_item(n, PROMOTION_USE_CASE).get("loop") or {}).get("promotion") == "propose"
    ]
    assert proposing, [_item(n, PROMOTION_USE_CASE)["reasons"] for n in nights]
    night = proposing[0]
    assert night is not nights[0]
    item = _item(night, PROMOTION_USE_CASE)
    assert any(f"proposed {candidate} from logged evidence" in r for r in item["reasons"])
    published = item["published"]
    assert published["state"] == "production" and published["approved_by"] == "auto-approval"
    # the registry keeps the evidence: the sequential test on the logged rows
    version = next(
        v for v in demo["versions"][PROMOTION_USE_CASE] if v.version == published["version"]
    )
    assert version.evidence["candidate"]["config_key"] == candidate
    assert version.evidence["method"] == "sequential" and version.evidence["rows_used"] > 0
    assert (version.version, "approve", "auto-approval") in demo["audit"][PROMOTION_USE_CASE]
    rollout = dict(version.config.metadata or {}).get("rollout")
    assert rollout is not None and rollout["candidate_config_id"] == candidate
    story = "\n".join(demo["report_lines"])
    assert f"{PROMOTION_USE_CASE}: " in story and "promoted from logged evidence" in story


def test_a_routing_table_by_user_segment_is_published(demo: dict[str, Any]) -> None:
    from strategies.search import PRESETS
    from tasks.registry.routing import routing_of

    world = routing_world(start=dt.date(2026, 10, 1), days=DAYS, seed=7)
    tables = [
        (v, routing_of(v.config))
        for v in demo["versions"][ROUTING_USE_CASE]
        if routing_of(v.config) is not None
    ]
    assert tables
    version, table = tables[0]
    assert table is not None and table.context == "user_segment"
    assert len(table.rows) >= 2
    night = next(
        n
        for n in demo["nights"]
        if _item(n, ROUTING_USE_CASE)["published"]["version"] == version.version
    )
    assert _item(night, ROUTING_USE_CASE)["published"]["state"] == "production"
    assert _item(night, ROUTING_USE_CASE)["metrics"]["routing_dr_gain_lower"] > 0

    # grading only: the leader of each clear segment is the world's best arm there
    def leader(segment: str) -> str:
        row = table.rows.get(segment, table.default)
        return max(row, key=row.__getitem__)

    w = PRESETS["balanced"]
    coef = (w.quality, -w.cost / w.cost_scale_usd, -w.latency / w.latency_scale_ms, -w.errors)
    oracle = world.oracle(coefficients=coef)
    for segment in ("enterprise", "free"):
        assert leader(segment) == next(iter(oracle[segment])), (segment, table.rows)
    assert leader("enterprise") != leader("free")
    story = "\n".join(demo["report_lines"])
    assert f"{ROUTING_USE_CASE}: routing table published (" in story


def test_the_story_module_examples_run() -> None:
    import doctest

    from tasks.simulation import demo_story

    result = doctest.testmod(demo_story)
    assert result.attempted > 0 and result.failed == 0
