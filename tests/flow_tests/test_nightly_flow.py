"""The nightly flow on a small simulated world, through Prefect's temporary server.

One module-scoped world (simulated, then ingested by the first night, a module fixture) serves
every test, in any order; each test runs the real flow and reads the warehouse, the registry and
MLflow afterwards.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tasks.core.settings import REPO_ROOT, Settings, load_settings

pytestmark = pytest.mark.slow

DAYS = 16
START = dt.date(2026, 10, 1)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: None
) -> Iterator[dict[str, Any]]:
    from tasks.simulation import SimulationSpec, write_simulation

    home = tmp_path_factory.mktemp("nightly-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("LLMOPT_HOME", str(home))
    patch.setenv("LLMOPT_CONFIG_DIR", str(REPO_ROOT / "tasks" / "simulation" / "demo_config"))
    settings = load_settings().ensure_dirs()
    spec = SimulationSpec(days=DAYS, total_rows=DAYS * 2_500, drift=False, cost_spike=False)
    sim = write_simulation(spec, settings.sim_dir, fmt="parquet")
    yield {"settings": settings, "paths": [str(p) for p in sorted(sim.paths)], "spec": spec}
    patch.undo()


def _night(day_index: int, **overrides: Any) -> dict[str, Any]:
    from flows.nightly import NightlyParameters, nightly_optimization

    params = NightlyParameters(as_of=START + dt.timedelta(days=day_index), **overrides)
    result: dict[str, Any] = nightly_optimization(params=params)
    return result


def _query(settings: Settings, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _registry(settings: Settings) -> Any:
    from tasks.registry.store import RegistryStore

    return RegistryStore.from_settings(settings)


@pytest.fixture(scope="module")
def first_night(world: dict[str, Any]) -> dict[str, Any]:
    """Night 1: ingests the first files and publishes v1 of every use case (the later nights
    build on it, whatever order the tests run in); its summary and the rows it left."""
    summary = _night(DAYS - 3, input_paths=world["paths"][: DAYS - 2])
    rows = _query(world["settings"], "SELECT count(*) FROM usage_logs")[0][0]
    return {"summary": summary, "rows": rows}


def test_first_night_ingests_publishes_and_tracks(
    world: dict[str, Any], first_night: dict[str, Any]
) -> None:
    settings: Settings = world["settings"]
    summary = first_night["summary"]

    assert summary["failures"] == {}
    assert summary["ingest"]["balanced"] is True
    assert summary["ingest"]["ingested"] == first_night["rows"]
    assert set(summary["use_cases"]) == {
        "support-summarize",
        "ticket-classify",
        "sales-email",
        "code-review",
    }
    store = _registry(settings)
    try:
        for use_case, item in summary["use_cases"].items():
            assert sum(item["plan"].values()) == pytest.approx(1.0, abs=1e-5)  # rounded
            version = store.get(use_case, 1)  # later nights may have published more
            assert math.fsum(arm.weight for arm in version.config.arms) == pytest.approx(
                1.0, abs=1e-9
            )
            assert version.run_id == summary["mlflow_parent_run_id"]
            assert Path(store.snapshot_file(use_case)).is_file()
    finally:
        store.dispose()

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    parent = client.get_run(summary["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["use_cases_ok"] == 4
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert {c.data.tags["use_case"] for c in children} == set(summary["use_cases"])
    for child in children:
        assert {"requests", "quality_mean", "cost_per_request_usd"} <= set(child.data.metrics)
        files = {a.path for a in client.list_artifacts(child.info.run_id, "reports")}
        assert "reports/chosen_config.json" in files
        plots = {a.path for a in client.list_artifacts(child.info.run_id, "plots")}
        assert "plots/frontier.png" in plots


def test_next_nights_follow_the_registry_and_rerun_is_idempotent(
    world: dict[str, Any], first_night: dict[str, Any]
) -> None:
    settings: Settings = world["settings"]
    first = _night(DAYS - 2, input_paths=[world["paths"][DAYS - 2]])
    assert first["failures"] == {}
    store = _registry(settings)
    try:
        versions = {uc: store.latest_version(uc) for uc in first["use_cases"]}
        rollouts = {
            uc: store.get(uc, "production").config.metadata.get("rollout")
            for uc in first["use_cases"]
        }
    finally:
        store.dispose()
    decisions = _query(
        settings, "SELECT count(*) FROM experiment_decisions WHERE run_id = 'night-2026-10-15'"
    )[0][0]

    again = _night(DAYS - 2, input_paths=[world["paths"][DAYS - 2]])
    assert again["failures"] == {}
    assert again["ingest"]["ingested"] == 0  # the manifest knows the file
    for item in again["use_cases"].values():
        assert item["published"]["status"].startswith("kept")
    store = _registry(settings)
    try:
        assert {uc: store.latest_version(uc) for uc in again["use_cases"]} == versions
        after = {
            uc: store.get(uc, "production").config.metadata.get("rollout")
            for uc in again["use_cases"]
        }
        assert after == rollouts  # a re-run never advances a rollout twice
    finally:
        store.dispose()
    assert (
        _query(
            settings,
            "SELECT count(*) FROM experiment_decisions WHERE run_id = 'night-2026-10-15'",
        )[0][0]
        == decisions
    )


def test_one_broken_use_case_is_reported_and_the_others_finish(
    world: dict[str, Any], first_night: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.nightly import steps as nightly_steps

    real = nightly_steps.optimize_use_case

    def broken(settings: Settings, night: Any, use_case: str, *args: Any, **kwargs: Any) -> Any:
        if use_case == "sales-email":
            raise RuntimeError("simulated outage of the sales-email branch")
        return real(settings, night, use_case, *args, **kwargs)

    monkeypatch.setattr(nightly_steps, "optimize_use_case", broken)
    summary = _night(DAYS - 1, input_paths=[world["paths"][DAYS - 1]], dry_run=True)
    assert set(summary["failures"]) == {"sales-email"}
    assert "simulated outage" in summary["failures"]["sales-email"]
    assert set(summary["use_cases"]) == {"support-summarize", "ticket-classify", "code-review"}
    for item in summary["use_cases"].values():
        assert item["published"] == {"status": "dry run: nothing published"}


def test_a_second_night_while_one_runs_fails_clearly(world: dict[str, Any]) -> None:
    from tasks.core.run_lock import RunLockTimeout, exclusive_run, lock_path_for

    settings: Settings = world["settings"]
    with (
        exclusive_run(lock_path_for(settings.warehouse_path)),
        pytest.raises(RunLockTimeout, match="another nightly run holds"),
    ):
        _night(DAYS - 1, lock_wait_seconds=1)


def test_printed_summary_lists_experiment_decisions_alerts_and_the_loop(
    first_night: dict[str, Any],
) -> None:
    from flows.nightly_commands import _human_summary

    summary = first_night["summary"]
    text = _human_summary(summary)
    lines = text.splitlines()
    assert summary["experiments"], "the simulated world runs experiments"
    for experiment, decision in summary["experiments"].items():
        assert f"  {experiment}: {decision}" in lines
    for use_case, item in summary["use_cases"].items():
        assert f"  {use_case}: {item['headline']}" in lines
        assert all(f"    ALERT {alert}" in lines for alert in item["alerts"])
        if item.get("loop"):
            assert f"  {use_case}:" in lines and any("objective" in line for line in lines)
    assert any(line.startswith("the loop") for line in lines) == any(
        item.get("loop") for item in summary["use_cases"].values()
    )
