"""The path past one machine: the nightly flow's per-use-case fan-out on a Dask cluster.

The flow is run once with ``prefect_dask.DaskTaskRunner`` pointed at a local Dask cluster that
this test owns (one in-process worker with two threads). A scheduler plugin records every task
the cluster finished, so the test fails if the fan-out silently fell back to threads.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, cast

import pytest
from distributed import LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

from tasks.core.settings import REPO_ROOT


class _FinishedKeys(SchedulerPlugin):
    """Keys of the tasks the Dask scheduler saw finish (reach ``memory``)."""

    name = "finished-keys"

    def __init__(self) -> None:
        self.keys: list[str] = []

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "memory":
            self.keys.append(str(key))


@pytest.mark.slow  # a Dask LocalCluster plus a Prefect server: 20-130 s on 2 cores
def test_nightly_fans_use_cases_out_on_a_dask_cluster(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMOPT_CONFIG_DIR", str(REPO_ROOT / "tasks" / "simulation" / "demo_config"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.setenv("MPLBACKEND", "Agg")

    from prefect.futures import PrefectFuture
    from prefect.task_runners import TaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.nightly import NightlyParameters, nightly_optimization
    from tasks.core.settings import load_settings
    from tasks.registry.store import RegistryStore
    from tasks.simulation import SimulationSpec, write_simulation

    load_settings().ensure_dirs()
    spec = SimulationSpec(seed=7, days=15, total_rows=30_000)
    sim = write_simulation(spec, tmp_path / "logs", fmt="parquet")
    as_of = spec.start_date + dt.timedelta(days=spec.days - 1)
    params = NightlyParameters(as_of=as_of, input_paths=[str(p) for p in sim.paths])

    finished = _FinishedKeys()
    # processes=False: the worker lives in this process (no pickling of the flow's arguments,
    # no ports: the scheduler listens on inproc://), which is what keeps this test fast.
    # the session's Prefect server (tests/flow_tests/conftest.py): a second, nested test server
    # in the same process would leave the task-run events on the first one
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        cluster.scheduler.add_plugin(finished)
        # the cast only widens prefect's generic type for mypy (as flows.nightly does)
        runner = cast(
            "TaskRunner[PrefectFuture[Any]]", DaskTaskRunner(address=cluster.scheduler_address)
        )
        state = nightly_optimization.with_options(task_runner=runner)(
            params=params, return_state=True
        )
        assert state.is_completed(), state.message
        summary = state.result()

    use_cases = set(spec.use_cases)
    assert len(use_cases) == 4
    assert summary["failures"] == {}
    assert set(summary["use_cases"]) == use_cases
    assert summary["ingest"]["ingested"] == sim.rows

    # experiments, the aggregate step and every use case ran as Dask tasks
    ran = sorted(key.split("-")[0] for key in finished.keys)
    assert ran == sorted(["experiments_task", "aggregate_task"] + ["use_case_task"] * 4), ran
    # (Prefect's own task-run records are not read back here: they arrive through the
    # process-wide events worker, which in a shared test process may still point at another
    # test's server; the Dask scheduler's record above is the proof of the fan-out.)

    store = RegistryStore.from_settings(load_settings())
    try:
        for use_case in use_cases:
            version = store.get(use_case, "production")
            assert version.state.value == "production"
            assert version.config.arms, use_case
            assert summary["use_cases"][use_case]["published"]["version"] == version.version
    finally:
        store.dispose()
