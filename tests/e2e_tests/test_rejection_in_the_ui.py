"""A person rejects tonight's proposal through Prefect's pause-for-input form (real server).

The first night of a use case whose A/B test ships pauses for a person (``approval: human``,
``ask_in_ui``). A thread answers the form exactly as the UI does (``resume_flow_run`` with the
run input): reject, by bob, with a reason. The run completes; nothing becomes production (a first
night), the registry audit holds bob's rejection and reason, and the summary says so.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tasks.core.settings import REPO_ROOT, load_settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NIGHT = dt.date(2026, 10, 21)
USE_CASE = "support-summarize"


def _answer_when_paused(api_url: str, answer: dict[str, str], errors: list[BaseException]) -> None:
    """Answer the first paused run's form. Prefect's settings live in a context variable that
    a new thread does not inherit: point this thread at the server explicitly."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        _answer(answer, errors)


def _answer(answer: dict[str, str], errors: list[BaseException]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.flow_runs import resume_flow_run

    try:
        deadline = time.monotonic() + 200
        paused = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
        )
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                runs = client.read_flow_runs(flow_run_filter=paused, limit=5)
                if runs:
                    resume_flow_run(runs[0].id, run_input=answer)
                    return
                time.sleep(1)
        raise TimeoutError("the run never paused for approval")
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_a_first_night_rejection_in_the_ui_leaves_no_production(
    tmp_path: Path, prefect_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.simulation import SimulationSpec, write_simulation

    home = tmp_path / "home"
    sim = write_simulation(
        SimulationSpec(days=21, requests_per_day={USE_CASE: 4000}, drift=False, cost_spike=False),
        tmp_path / "sim",
        fmt="parquet",
    )
    incoming = home / "data" / "incoming"
    incoming.mkdir(parents=True)
    for path in sim.paths:
        shutil.copy(path, incoming / Path(path).name)
    try:
        from tasks.simulation.demo_config import DEMO_CONFIG_DIR

        config_dir = Path(DEMO_CONFIG_DIR)
    except ImportError:
        config_dir = REPO_ROOT / "data" / "config"
    monkeypatch.setenv("LLMOPT_HOME", str(home))
    monkeypatch.setenv("LLMOPT_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("PREFECT_API_URL", prefect_server.url)

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.nightly import NightlyParameters, nightly_optimization

    errors: list[BaseException] = []
    answer = {"decision": "reject", "approver": "bob", "reason": "not before the launch"}
    with temporary_settings({PREFECT_API_URL: prefect_server.url}):
        answering = threading.Thread(
            target=_answer_when_paused, args=(prefect_server.url, answer, errors)
        )
        answering.start()
        summary = nightly_optimization(
            params=NightlyParameters(
                as_of=NIGHT,
                input_paths=["data/incoming"],
                approval="human",
                ask_in_ui=True,
                approval_timeout_seconds=240,
            )
        )
        answering.join(timeout=60)
    assert not errors, errors

    published = summary["use_cases"][USE_CASE]["published"]
    assert published["status"] == "rejected" and published["rejected_by"] == "bob"
    assert published["production_version"] is None
    assert "no production version yet" in published["message"]

    from tasks.registry.store import NotFoundError, RegistryStore

    store = RegistryStore.from_settings(load_settings())
    try:
        with pytest.raises(NotFoundError):
            store.get(USE_CASE, "production")
        rejects = [(e.actor, e.reason) for e in store.history(USE_CASE) if e.action == "reject"]
    finally:
        store.dispose()
    assert rejects == [("bob", "not before the launch")]
