"""End to end, with real services on 127.0.0.1 started by the test run.

* SQLite variant: ``prefect server start``, ``mlflow server``, and a deployment served by
  ``llmopt nightly serve`` in its own process; the test triggers it with ``run_deployment``,
  exactly as "Run" in the Prefect UI does.
* PostgreSQL variant (a shared deployment): the Prefect server database, the MLflow backend
  store, the Optuna storage and the registry all on the PostgreSQL service.

Both run the real nightly flow over the simulated month up to the drift day, then check that the
flow run completed, MLflow holds the runs, metrics and artifacts, the registry holds the
approved configuration, the known A/B winner is being rolled out and the drift raised an alert.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tasks.core.settings import REPO_ROOT, Settings, load_settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NIGHT = dt.date(2026, 10, 21)  # the drift day of the simulated world; the A/B test ships
TREATMENT = "gpt-4o|summarize-v2|t=0.7|p=1.0|mt=512"


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The default simulated world's first 21 days, as daily Parquet files."""
    from tasks.simulation import SimulationSpec, write_simulation

    out = tmp_path_factory.mktemp("month")
    sim = write_simulation(SimulationSpec(), out, fmt="parquet", days=list(range(21)))
    paths = [str(p) for p in sorted(sim.paths)]
    assert len(paths) == 21
    return paths


def _settings_env(home: Path, **extra: str) -> dict[str, str]:
    return {
        "LLMOPT_HOME": str(home),
        "LLMOPT_CONFIG_DIR": str(REPO_ROOT / "tasks" / "simulation" / "demo_config"),
        **extra,
    }


async def _run_deployment(api_url: str, parameters: dict[str, Any], log: Path) -> Any:
    from prefect.client.orchestration import PrefectClient
    from prefect.deployments import run_deployment

    async with PrefectClient(api=api_url) as client:
        deadline = time.monotonic() + 120
        while True:
            try:
                await client.read_deployment_by_name("nightly-optimization/e2e")
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    tail = log.read_text()[-3000:]
                    raise RuntimeError(f"deployment never registered:\n{tail}") from exc
                await asyncio.sleep(2)
        return await run_deployment(
            "nightly-optimization/e2e",
            client=client,
            parameters=parameters,
            timeout=900,
            poll_interval=3,
            as_subflow=False,
        )


def _check_outcome(settings: Settings, tracking_uri: str) -> None:
    from mlflow import MlflowClient

    from tasks.registry.store import RegistryStore

    store = RegistryStore.from_settings(settings)
    try:
        production = store.get("support-summarize", "production")
        rollout = production.config.metadata["rollout"]
        assert rollout["candidate_config_id"] == TREATMENT  # the known winner ships
        arms = {arm.config_id: arm for arm in production.config.arms}
        assert arms[TREATMENT].role == "rollout" and arms[TREATMENT].weight > 0
        history = store.history("support-summarize")
        assert any(entry.action == "approve" for entry in history)
        run_id = production.run_id
    finally:
        store.dispose()

    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        alerts = con.execute(
            "SELECT count(*) FROM monitoring_alerts WHERE use_case = 'sales-email' AND as_of = ?",
            [NIGHT],
        ).fetchone()
    finally:
        con.close()
    assert alerts is not None and alerts[0] >= 1  # the injected drift raised an alert

    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(str(run_id))
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["experiments_shipped"] >= 1
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    assert len(children) == 4
    child = next(c for c in children if c.data.tags["use_case"] == "support-summarize")
    assert child.data.metrics["requests"] > 0
    names = {a.path for a in client.list_artifacts(child.info.run_id, "plots")}
    assert "plots/frontier.png" in names


def test_deployment_run_through_a_real_prefect_server_and_mlflow_server(
    tmp_path: Path, month: list[str], services: Any
) -> None:
    with (
        services.start_prefect(tmp_path / "prefect") as prefect,
        services.start_mlflow(tmp_path / "mlflow") as mlf,
    ):
        home = tmp_path / "home"
        env = {**prefect.env, **_settings_env(home, LLMOPT_MLFLOW_TRACKING_URI=mlf.url)}
        log = tmp_path / "serve.log"
        serve = [str(Path(sys.executable).parent / "llmopt"), "nightly", "serve", "--name", "e2e"]
        with services.spawn(serve, env, log, cwd=REPO_ROOT):
            flow_run = asyncio.run(
                _run_deployment(
                    prefect.url,
                    {"params": {"as_of": NIGHT.isoformat(), "input_paths": month}},
                    log,
                )
            )
        assert flow_run.state.is_completed(), (flow_run.state, log.read_text()[-4000:])
        settings = load_settings(env=_settings_env(home, LLMOPT_MLFLOW_TRACKING_URI=mlf.url))
        _check_outcome(settings, mlf.url)


@pytest.mark.postgres
def test_shared_deployment_with_everything_on_postgresql(
    tmp_path: Path, month: list[str], pg_url: str, services: Any
) -> None:
    with (
        services.postgres_database("llmopt_prefect") as prefect_db,
        services.postgres_database("llmopt_mlflow") as mlflow_db,
        services.postgres_database("llmopt_shared") as shared_db,
    ):
        base = "postgres@127.0.0.1:5432"
        with (
            services.start_prefect(
                tmp_path / "prefect", f"postgresql+asyncpg://{base}/{prefect_db}"
            ) as pf,
            services.start_mlflow(
                tmp_path / "mlflow", f"postgresql+psycopg://{base}/{mlflow_db}"
            ) as mlf,
        ):
            home = tmp_path / "home"
            env = _settings_env(
                home,
                LLMOPT_MLFLOW_TRACKING_URI=mlf.url,
                LLMOPT_OPTUNA_STORAGE=f"postgresql+psycopg://{base}/{shared_db}",
                LLMOPT_REGISTRY_URL=f"postgresql+psycopg://{base}/{shared_db}",
            )
            code = (
                "import datetime as dt, json, sys\n"
                "from flows.nightly import NightlyParameters, nightly_optimization\n"
                "s = nightly_optimization(params=NightlyParameters("
                "as_of=dt.date.fromisoformat(sys.argv[1]), input_paths=sys.argv[2:]))\n"
                "print(json.dumps({'failures': s['failures']}))\n"
            )
            done = subprocess.run(
                [sys.executable, "-c", code, NIGHT.isoformat(), *month],
                env={**pf.env, **env},
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            assert done.returncode == 0, done.stderr[-4000:]
            assert '"failures": {}' in done.stdout
            _check_outcome(load_settings(env=env), mlf.url)
            _assert_flow_run_recorded(pf)


def _assert_flow_run_recorded(prefect: Any) -> None:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.sorting import FlowRunSort

    async def runs() -> list[Any]:
        async with PrefectClient(api=prefect.url) as client:
            return await client.read_flow_runs(limit=10, sort=FlowRunSort.ID_DESC)

    flow_runs = asyncio.run(runs())
    assert [r.state.type.value for r in flow_runs] == ["COMPLETED"]
