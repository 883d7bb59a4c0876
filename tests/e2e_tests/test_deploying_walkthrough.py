"""docs/deploying.md's walkthrough, run word for word against real services, and the schedule.

The walkthrough block of the docs is run as one bash script (``set -euo pipefail``): a real
``prefect server start`` with its scheduler service (loop every 2 s), the work pool, ``prefect
deploy`` of ``deployments/prefect.yaml``, a real ``prefect worker start``, a run scheduled a few
seconds ahead with custom parameters, a human approval through Prefect's pause-for-input API
(``llmopt nightly approve``), ``prefect flow-run watch`` / ``logs`` and ``llmopt registry show``.
The incoming folder holds a simulated month of one use case whose A/B test ships on the night,
so the run pauses for a person.

Then: the cron produced SCHEDULED runs at 02:15 UTC, the triggered run is COMPLETED and named
after its night, the operator's Prefect commands exit 0 and show it, the registry's production
version was approved by the person, and the MLflow parent run links the Prefect run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.core.settings import REPO_ROOT, load_settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOC = REPO_ROOT / "docs" / "deploying.md"
BIN = Path(sys.executable).parent
NIGHT = dt.date(2026, 10, 21)
USE_CASE = "support-summarize"
SCRIPT_TIMEOUT_S = 420


def walkthrough_script() -> str:
    """The first ```bash block under "## Walkthrough" in docs/deploying.md, as written."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Walkthrough", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert match is not None, "docs/deploying.md lost its walkthrough block"
    return match.group(1)


def test_the_walkthrough_block_names_every_operator_step() -> None:
    script = walkthrough_script()
    for step in (
        "prefect server start",
        "prefect work-pool create nightly-pool",
        "prefect deploy --prefect-file deployments/prefect.yaml",
        "prefect worker start --pool nightly-pool",
        "prefect deployment run nightly-optimization/nightly",
        "llmopt nightly approve",
        "llmopt registry show",
    ):
        assert step in script, step


def test_prefect_yaml_and_nightly_serve_share_one_parameter_set() -> None:
    from flows.nightly import (
        DEPLOYMENT_NAME,
        NIGHTLY_CRON,
        SERVE_DEPLOYMENT_NAME,
        NightlyParameters,
        deployment_parameters,
    )

    spec = yaml.safe_load((REPO_ROOT / "deployments" / "prefect.yaml").read_text())
    (deployment,) = spec["deployments"]
    from_yaml = NightlyParameters(**deployment["parameters"]["params"])
    assert from_yaml == NightlyParameters(**deployment_parameters()["params"])
    assert from_yaml.input_paths == ["data/incoming"]
    assert deployment["schedules"][0]["cron"] == NIGHTLY_CRON
    assert deployment["name"] == DEPLOYMENT_NAME != SERVE_DEPLOYMENT_NAME


def _incoming_month(home: Path, scratch: Path) -> None:
    """21 days of one use case (its A/B test ships on the 21st) into the incoming folder."""
    from tasks.simulation import SimulationSpec, write_simulation

    spec = SimulationSpec(days=21, requests_per_day={USE_CASE: 4000}, drift=False, cost_spike=False)
    sim = write_simulation(spec, scratch, fmt="parquet")
    incoming = home / "data" / "incoming"
    incoming.mkdir(parents=True)
    for path in sim.paths:  # the logs only: the simulator's ground truth is not a log
        shutil.copy(path, incoming / Path(path).name)


def _config_dir() -> Path:
    try:  # the simulator's use cases are configured with the demo
        from tasks.simulation.demo_config import DEMO_CONFIG_DIR

        return Path(DEMO_CONFIG_DIR)
    except ImportError:
        return REPO_ROOT / "data" / "config"


def _prefect(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "prefect"), *args],
        env={**env, "COLUMNS": "250"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


def _flow_runs(api_url: str) -> list[Any]:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.sorting import FlowRunSort

    async def read() -> list[Any]:
        async with PrefectClient(api=api_url) as client:
            return await client.read_flow_runs(limit=50, sort=FlowRunSort.EXPECTED_START_TIME_ASC)

    return asyncio.run(read())


def _events(api_url: str, name: str) -> list[dict[str, Any]]:
    """Events of one name from the server's event store (the events API the UI reads)."""
    import httpx

    since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    body = {"filter": {"event": {"name": [name]}, "occurred": {"since": since}}, "limit": 50}
    deadline = time.monotonic() + 20  # events are written by the server asynchronously
    while True:
        response = httpx.post(f"{api_url}/events/filter", json=body, timeout=10)
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()["events"]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(1)


def _wait_for_scheduled(api_url: str, seconds: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + seconds
    while True:
        scheduled = [
            r for r in _flow_runs(api_url) if r.auto_scheduled and r.state_type.value == "SCHEDULED"
        ]
        if scheduled or time.monotonic() > deadline:
            return scheduled
        time.sleep(2)


def test_deploying_walkthrough_word_for_word(tmp_path: Path, services: Any) -> None:
    home = tmp_path / "home"
    _incoming_month(home, tmp_path / "sim")
    port = services.free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = services.base_env(tmp_path)
    env.update(
        LLMOPT_HOME=str(home),
        LLMOPT_CONFIG_DIR=str(_config_dir()),
        PREFECT_API_URL=api,
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        PREFECT_WORKER_QUERY_SECONDS="2",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    log = tmp_path / "walkthrough.log"
    cmd = ["bash", "-euo", "pipefail", "-c", walkthrough_script()]
    with services.spawn(cmd, env, log, cwd=REPO_ROOT) as script:
        try:
            code = script.wait(timeout=SCRIPT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        output = log.read_text(errors="replace")
        assert code == 0, output[-6000:]

        # the cron made SCHEDULED runs at 02:15 UTC (the scheduler service works on our stack)
        scheduled = _wait_for_scheduled(api)
        assert scheduled, output[-3000:]
        for run in scheduled:
            start = run.expected_start_time.astimezone(dt.UTC)
            assert (start.hour, start.minute) == (2, 15)

        # the triggered run: picked up by the worker, approved by a person, completed
        (run,) = [r for r in _flow_runs(api) if not r.auto_scheduled]
        assert run.state_type.value == "COMPLETED", (run.state, output[-4000:])
        assert run.name == f"nightly-{NIGHT.isoformat()}"
        assert run.parameters["params"]["approval"] == "human"  # the custom parameters

        listing = _prefect(env, "deployment", "ls")
        assert "nightly-optimization/nightly" in listing
        assert str(run.id) in _prefect(env, "flow-run", "ls")
        logs = _prefect(env, "flow-run", "logs", str(run.id))
        assert "waiting for a person to approve or reject support-summarize" in logs
        assert f"{USE_CASE}: published" in logs
        assert "nightly-summary" in _prefect(env, "artifact", "ls")
        assert "nightly-pool" in _prefect(env, "work-pool", "ls")
        _prefect(
            env, "automation", "create", "--from-file", "deployments/automations/llmopt-alerts.yaml"
        )
        assert "llmopt critical alert" in _prefect(env, "automation", "ls")
        _prefect(env, "block", "ls")
        published = _events(api, "llmopt.config.published")
        assert any(
            e["resource"]["prefect.resource.id"] == f"llmopt.use-case.{USE_CASE}"
            and f"prefect.flow-run.{run.id}" in {r["prefect.resource.id"] for r in e["related"]}
            and e["payload"]["approved_by"] == "alice"
            for e in published
        ), published

    _check_registry_and_mlflow(home, str(run.id))


def _check_registry_and_mlflow(home: Path, flow_run_id: str) -> None:
    from mlflow import MlflowClient

    from tasks.nightly.tracking import NIGHTLY_EXPERIMENT
    from tasks.registry.store import RegistryStore

    settings = load_settings(env={"LLMOPT_HOME": str(home)})
    store = RegistryStore.from_settings(settings)
    try:
        production = store.get(USE_CASE, "production")
        approvals = [e for e in store.history(USE_CASE) if e.action == "approve"]
    finally:
        store.dispose()
    assert approvals and approvals[-1].actor == "alice"
    assert "A/B shows +2 points" in (approvals[-1].reason or "")

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(NIGHTLY_EXPERIMENT)
    assert experiment is not None
    parent = client.get_run(str(production.run_id))
    assert parent.data.tags["prefect.flow_run_id"] == flow_run_id
    assert parent.data.tags["prefect.flow_run_url"].endswith(flow_run_id)
    assert parent.data.tags["dry_run"] == "false"
    assert parent.info.run_name == f"nightly-{NIGHT.isoformat()}"
