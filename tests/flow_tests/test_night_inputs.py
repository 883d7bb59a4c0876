"""The night's aggregate step: one set of grouped scans gives every use case what the
per-use-case queries gave, and the per-use-case step then runs with no warehouse at all."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from tasks.core.settings import Settings, load_settings
from tasks.simulation import SimulationSpec
from tasks.simulation.demo_config import DEMO_CONFIG_DIR
from tasks.warehouse.config_metrics import CONFIG_KEY_SQL, config_metrics

DAYS = 10
LOOKBACK = 7
SPEC = SimulationSpec(days=DAYS, total_rows=DAYS * 1_500)


@pytest.fixture(scope="module")
def simulated_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated warehouse file, simulated and ingested once for the module."""
    from tasks.ingest.pipeline import ingest_paths
    from tasks.simulation import write_simulation

    home = tmp_path_factory.mktemp("night-inputs-home")
    built = load_settings(
        env={"LLMOPT_HOME": str(home), "LLMOPT_CONFIG_DIR": str(DEMO_CONFIG_DIR)}
    ).ensure_dirs()
    sim = write_simulation(SPEC, built.sim_dir, fmt="parquet")
    # validate=False: the Great Expectations pass (tested in tests/ingest_tests) is four fifths of
    # this fixture's CPU and stores nothing the aggregate step reads
    ingest_paths([str(p) for p in sim.paths], settings=built, validate=False)
    return built.warehouse_path


@pytest.fixture
def night(settings: Settings, simulated_warehouse: Path) -> Iterator[dict[str, Any]]:
    """A copy of the module's warehouse in this test's home (tests delete rows, close it)."""
    from tasks.warehouse.connection import connect

    shutil.copyfile(simulated_warehouse, settings.warehouse_path)
    con = connect(settings)
    as_of = SPEC.start_date + dt.timedelta(days=DAYS - 1)
    use_cases = [r[0] for r in con.execute("SELECT DISTINCT use_case FROM usage_logs").fetchall()]
    try:
        yield {"con": con, "as_of": as_of, "use_cases": sorted(use_cases)}
    finally:
        con.close()


def _night_metrics_one(con: duckdb.DuckDBPyConnection, use_case: str, day: dt.date) -> list[Any]:
    row = con.execute(
        """
        SELECT count(*), avg(quality), avg(cost_usd), quantile_cont(latency_ms, 0.95),
               avg(CASE WHEN status = 'error' THEN 1.0 ELSE 0.0 END), sum(cost_usd)
        FROM usage_logs WHERE use_case = ? AND day = ?
        """,
        [use_case, day],
    ).fetchall()[0]
    return [None if v is None else float(v) for v in row]


def _incumbent_one(
    con: duckdb.DuckDBPyConnection, use_case: str, start: dt.date, end: dt.date
) -> str:
    return str(
        con.execute(
            f"""
            SELECT {CONFIG_KEY_SQL} AS key,
                   count(*) FILTER (WHERE experiment_id IS NULL OR variant_id = 'control') AS inc,
                   count(*) AS n
            FROM usage_logs WHERE use_case = ? AND day BETWEEN ? AND ?
            GROUP BY 1 ORDER BY inc DESC, n DESC, key LIMIT 1
            """,
            [use_case, start, end],
        ).fetchall()[0][0]
    )


def _bootstrap_one(
    settings: Settings, con: Any, use_case: str, start: dt.date, end: dt.date
) -> str:
    """First-night production from this use case's own query: the best lower bound on its
    objective (ties to the cheaper), the incumbent only when nothing can be ranked."""
    from strategies.search import ConfigStats
    from tasks.nightly.loop import objective_for

    frame = config_metrics(con, use_case=use_case, start=start, end=end)
    stats = [ConfigStats.from_row(r) for r in frame.to_dict("records")]
    days = (end - start).days + 1
    monthly = float(frame["n"].sum()) / days * 30
    choice = objective_for(settings, use_case).best(stats, monthly_requests=monthly)
    return choice.config_key or _incumbent_one(con, use_case, start, end)


def test_aggregate_gives_each_use_case_what_its_own_queries_give(
    settings: Settings, night: dict[str, Any]
) -> None:
    from tasks.allocation.budget import budget_report
    from tasks.core.config import load_config
    from tasks.monitoring.run import load_monitoring_config, report_to_dict, run_monitoring
    from tasks.nightly.inputs import NIGHT_METRIC_NAMES, aggregate_night

    con, as_of, use_cases = night["con"], night["as_of"], night["use_cases"]
    start = as_of - dt.timedelta(days=LOOKBACK - 1)
    incumbents = {uc: _bootstrap_one(settings, con, uc, start, as_of) for uc in use_cases}
    monitoring_one = {
        uc: run_monitoring(
            con,
            settings,
            as_of=as_of,
            run_id="night-test",
            config=load_monitoring_config(settings),
            production_configs={uc: incumbents[uc]},
            use_cases=[uc],
            record=False,
        ).use_cases[0]
        for uc in use_cases
    }
    budget_config = load_config("budget", settings)

    inputs = aggregate_night(
        settings, con, as_of=as_of, use_cases=use_cases, run_key="night-test", lookback_days=7
    )

    assert sorted(inputs) == use_cases
    for uc in use_cases:
        got = inputs[uc]
        assert got.problem is None
        pd.testing.assert_frame_equal(
            got.history(as_of), config_metrics(con, use_case=uc, end=as_of)
        )
        pd.testing.assert_frame_equal(
            got.window(as_of), config_metrics(con, use_case=uc, start=start, end=as_of)
        )
        expected_tonight = dict(
            zip(NIGHT_METRIC_NAMES, _night_metrics_one(con, uc, as_of), strict=True)
        )
        assert got.night_metrics == pytest.approx(expected_tonight, rel=1e-12)
        assert got.registry is not None
        assert got.registry.production_id == incumbents[uc]
        assert got.registry.current_version is None
        assert got.registry.bootstrap_reason and incumbents[uc] in got.registry.bootstrap_reason
        assert got.monitoring is not None
        assert report_to_dict(got.monitoring.use_cases[0]) == report_to_dict(monitoring_one[uc])
        expected_budget = budget_report(con, as_of=as_of, config=budget_config, use_cases=[uc])
        assert got.budget == expected_budget[0]
        assert got.rollout_pair is None  # no rollout before the first publish


def test_a_use_case_without_traffic_in_the_window_is_a_problem_of_its_own(
    settings: Settings, night: dict[str, Any]
) -> None:
    from tasks.nightly.inputs import aggregate_night

    con, as_of, use_cases = night["con"], night["as_of"], night["use_cases"]
    con.execute(
        "DELETE FROM usage_logs WHERE use_case = ? AND day > ?",
        [use_cases[0], as_of - dt.timedelta(days=8)],
    )
    inputs = aggregate_night(
        settings,
        con,
        as_of=as_of,
        use_cases=use_cases,
        run_key="night-test",
        lookback_days=LOOKBACK,
        monitoring=False,
    )
    assert "no traffic" in str(inputs[use_cases[0]].problem)
    assert all(inputs[uc].problem is None for uc in use_cases[1:])


@pytest.mark.slow  # ~2 s: the whole night decided for every use case
def test_each_use_case_is_decided_with_no_warehouse_connection(
    settings: Settings, night: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.nightly import steps
    from tasks.warehouse import connection as warehouse

    con, as_of, use_cases = night["con"], night["as_of"], night["use_cases"]
    day = steps.Night(as_of=as_of, use_cases=tuple(use_cases), first_day=as_of, last_day=as_of)
    steps.prepare_storages(settings)
    options = steps.NightOptions(lookback_days=LOOKBACK)
    inputs = steps.aggregate_night(settings, day, options, run_key=steps.run_key_for(day))
    con.close()

    def no_warehouse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the per-use-case step opened the warehouse")

    monkeypatch.setattr(warehouse, "connect", no_warehouse)
    from tasks.nightly import night as night_module

    monkeypatch.setattr(night_module, "connect", no_warehouse)
    monkeypatch.setattr(duckdb, "connect", no_warehouse)
    for uc in use_cases:
        outcome = steps.optimize_use_case(settings, day, uc, options, [], inputs=inputs[uc])
        shares = [arm["weight"] for arm in outcome.plan["arms"]]
        assert sum(shares) == pytest.approx(1.0)
        assert outcome.production_config_id == inputs[uc].registry.production_id  # type: ignore[union-attr]
        assert {"search", "bandit", "frontier", "monitoring"} <= set(outcome.strategies)

    broken = dataclasses.replace(inputs[use_cases[0]], problem="no traffic, say")
    with pytest.raises(steps.NothingToAnalyse, match="no traffic, say"):
        steps.optimize_use_case(settings, day, use_cases[0], options, [], inputs=broken)
