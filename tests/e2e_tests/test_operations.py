"""What an operator meets without a Prefect server: inputs, retries, events, MLflow, rejection,
one-line errors and help texts. Real stores (DuckDB, SQLite registry, MLflow SQLite) in a
scratch home; the CLI is run as a user runs it (a subprocess)."""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from prefect.states import Failed

from tasks.core.settings import REPO_ROOT, Settings
from tasks.ingest.pipeline import IngestError, ingest_paths
from tasks.nightly.ingest_step import (
    IngestFailed,
    incoming_dir,
    ingest_new_logs,
    is_transient,
    resolve_inputs,
)

BIN = Path(sys.executable).parent


def _day_of_logs(folder: Path, rows: int = 400) -> list[Path]:
    from tasks.simulation import SimulationSpec, write_simulation

    spec = SimulationSpec(days=2, total_rows=rows, drift=False, cost_spike=False)
    sim = write_simulation(spec, folder, fmt="jsonl", compress=True)
    return sorted(Path(p) for p in sim.paths)


# ------------------------------------------------------------------------------ inputs


def test_an_incoming_folder_that_does_not_exist_yet_is_nothing_new(settings: Settings) -> None:
    assert not incoming_dir(settings).exists()
    report = ingest_new_logs(settings, ["data/incoming", "data/incoming/*.jsonl.gz"])
    assert report["nothing_new"] is True and report["ingested"] == 0
    assert report["empty_inputs"] == ["data/incoming", "data/incoming/*.jsonl.gz"]


@pytest.mark.slow  # an MLflow store, an ingest or a CLI start: seconds each
def test_relative_inputs_resolve_under_the_home_and_empty_globs_are_skipped(
    settings: Settings,
) -> None:
    logs = _day_of_logs(incoming_dir(settings))
    found, empty = resolve_inputs(settings, ["data/incoming", "data/incoming/*.parquet"])
    assert found == [str(incoming_dir(settings))]
    assert empty == ["data/incoming/*.parquet"]  # Parquet glob, JSONL files: nothing, no error
    report = ingest_new_logs(settings, ["data/incoming/*.jsonl.gz", "data/incoming/*.parquet"])
    assert report["nothing_new"] is False
    expected = sum(1 for p in logs for _ in __import__("gzip").open(p, "rt"))
    assert report["totals"]["ingested"] + report["totals"]["quarantined"] == expected


def test_a_named_file_that_does_not_exist_fails_clearly(settings: Settings) -> None:
    with pytest.raises(IngestError, match=r"no such file or directory: .*missing\.jsonl"):
        resolve_inputs(settings, ["data/incoming/missing.jsonl"])


def test_only_transient_ingest_errors_are_retried(settings: Settings) -> None:
    from flows.nightly import _retry_transient, ingest_task

    assert ingest_task.retry_condition_fn is _retry_transient
    assert ingest_task.retries == 2
    deterministic = [IngestError("x.csv: unsupported"), IngestFailed("1 file failed")]
    transient = [OSError("I/O error"), duckdb.IOException("Could not set lock on file")]
    for exc in [*deterministic, FileNotFoundError("gone")]:
        assert not _retry_transient(ingest_task, None, Failed(data=exc)), exc
    for exc in transient:
        assert _retry_transient(ingest_task, None, Failed(data=exc)), exc
    assert is_transient(TimeoutError()) and not is_transient(ValueError("bad"))


# ------------------------------------------------------------------------------ events


def test_alerts_and_decisions_map_to_prefect_events() -> None:
    from tasks.nightly import events

    strategies: dict[str, Any] = {
        "monitoring": {
            "use_cases": [
                {
                    "use_case": "chat",
                    "alerts": [
                        {
                            "kind": "rule",
                            "name": "cost",
                            "severity": "critical",
                            "message": "cost 2.3x",
                            "incident_key": "chat|cost",
                        }
                    ],
                }
            ]
        }
    }
    alerts = events.alerts_of(strategies)
    assert [a["name"] for a in alerts] == ["cost"]
    assert events.alerts_of({"monitoring": None}) == []
    resource = events.use_case_resource("chat", "2026-10-21", severity="critical")
    assert resource["prefect.resource.id"] == "llmopt.use-case.chat"
    assert resource["llmopt.severity"] == "critical"
    assert events.decision_event("publish") == events.CONFIG_PUBLISHED
    assert events.decision_event("rollback") == events.CONFIG_PUBLISHED
    assert events.decision_event("rejected") == events.CONFIG_REJECTED
    assert events.decision_event("candidate") == events.CONFIG_PENDING
    assert events.decision_event("dry run: nothing published") is None


# ------------------------------------------------------------------------------ MLflow


@pytest.mark.slow  # an MLflow store, an ingest or a CLI start: seconds each
def test_night_metrics_chart_in_night_order_and_reruns_supersede(settings: Settings) -> None:
    from tasks.nightly.tracking import SUPERSEDED_BY, RunRecord, Tracker, open_night_run

    night = dt.date(2026, 10, 21)
    first = open_night_run(settings, as_of=night, run_key="night-2026-10-21", dry_run=True)
    second = open_night_run(
        settings,
        as_of=night,
        run_key="night-2026-10-21",
        prefect_flow_run_id="f00",
        prefect_flow_run_url="http://prefect/runs/flow-run/f00",
    )
    tracker = Tracker(settings)
    ids = tracker.log_tree(RunRecord("chat", metrics={"quality_mean": 0.7}), second)
    client = tracker.client
    old, new = client.get_run(first), client.get_run(second)
    assert old.data.tags[SUPERSEDED_BY] == second and old.data.tags["dry_run"] == "true"
    assert SUPERSEDED_BY not in new.data.tags
    assert new.data.tags["prefect.flow_run_id"] == "f00" and new.data.tags["dry_run"] == "false"
    child = client.get_run(ids["chat"])
    assert child.info.run_name == "chat 2026-10-21"
    (metric,) = client.get_metric_history(ids["chat"], "quality_mean")
    midnight = dt.datetime(2026, 10, 21, tzinfo=dt.UTC)
    assert metric.timestamp == int(midnight.timestamp() * 1000)
    assert metric.step == night.toordinal()


# ------------------------------------------------------------------------------ rejection


def _outcome(use_case: str, base_version: int) -> Any:
    from tasks.nightly.night import UseCaseOutcome

    config = {"use_case": use_case, "params": {"model": "gpt-4o", "prompt_id": "v2"}}
    return UseCaseOutcome(
        use_case=use_case,
        as_of=dt.date(2026, 10, 21),
        run_key="night-2026-10-21",
        current_version=None,
        base_version=base_version,
        production_config_id="x",
        plan={"arms": []},
        proposed_config=config,
        needs_approval=True,
        guardrails_passed=True,
        guardrails={"srm": True},
        registry_action="publish",
        rollback_to_version=None,
        headline="exp-1 ships v2",
        reasons=("exp-1 ships v2",),
        metrics={},
        strategies={},
        plots=(),
        evidence={},
    )


def test_a_rejection_keeps_production_and_records_the_person(settings: Settings) -> None:
    from tasks.nightly.publish import record_rejection
    from tasks.registry.model import RegistryConfig
    from tasks.registry.store import NotFoundError, RegistryStore

    first = record_rejection(
        settings, _outcome("chat", 0), rejected_by="bob", reason="too expensive"
    )
    assert first["production_version"] is None
    assert "no production version yet" in first["message"]

    store = RegistryStore.from_settings(settings)
    try:
        with pytest.raises(NotFoundError):
            store.get("chat", "production")
        base = RegistryConfig.from_dict({"use_case": "chat", "params": {"model": "gpt-4o-mini"}})
        v = store.publish("chat", base, expected_version=1, actor="ops", reason="baseline")
        store.approve("chat", v.version, actor="lead", comment="ok")
        store.promote("chat", v.version, actor="lead", comment="ok")
        latest = store.latest_version("chat")
    finally:
        store.dispose()

    second = record_rejection(
        settings, _outcome("chat", latest), rejected_by="carol", reason="not convinced"
    )
    assert second["production_version"] == v.version
    assert second["message"] == f"rejected by carol: production v{v.version} keeps serving"
    store = RegistryStore.from_settings(settings)
    try:
        assert store.get("chat", "production").version == v.version
        rejects = [e for e in store.history("chat") if e.action == "reject"]
    finally:
        store.dispose()
    assert [(e.actor, e.reason) for e in rejects] == [
        ("bob", "too expensive"),
        ("carol", "not convinced"),
    ]


def test_the_approval_form_has_no_preselected_answer() -> None:
    from flows.nightly import ApprovalDecision

    fields = ApprovalDecision.model_fields
    assert fields["decision"].is_required() and fields["approver"].is_required()
    assert all(field.description for field in fields.values())
    with pytest.raises(ValueError):
        ApprovalDecision(approver="alice")  # type: ignore[call-arg]


# ------------------------------------------------------------------------------ CLI


def _llmopt(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "llmopt"), *args],
        env={"LLMOPT_HOME": str(home), "PATH": str(BIN), "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmopt: error: "), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    return lines[0]


def test_nightly_run_on_an_empty_home_is_one_line_with_a_hint(tmp_path: Path) -> None:
    line = _one_line_error(_llmopt(tmp_path, "nightly", "run"))
    assert "no warehouse" in line and "data/incoming" in line


@pytest.mark.slow  # an MLflow store, an ingest or a CLI start: seconds each
def test_unknown_use_case_is_one_line_naming_the_known_ones(settings: Settings) -> None:
    logs = _day_of_logs(settings.home / "logs")
    ingest_paths([str(p) for p in logs], settings=settings).to_dict()
    line = _one_line_error(_llmopt(settings.home, "nightly", "run", "--use-case", "suport"))
    assert "unknown use case(s) suport" in line and "support-summarize" in line


@pytest.mark.slow  # an MLflow store, an ingest or a CLI start: seconds each
def test_demo_with_more_nights_than_days_is_one_line(tmp_path: Path) -> None:
    line = _one_line_error(_llmopt(tmp_path, "demo", "--nights", "40"))
    assert "--nights 40" in line and "--days 30" in line


def _without_help(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not helps.get(name):
                    missing.append(f"{path} {name}")
                missing += _without_help(sub, f"{path} {name}")
        elif not action.help:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_cli_command_and_option_has_help_text() -> None:
    from flows.cli import build_parser

    parser = build_parser()
    assert _without_help(parser, "llmopt") == []
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"nightly", "demo"} <= set(commands)  # the walk reached the operators' commands


@pytest.mark.slow  # a temporary Prefect server for the run (about 30 s)
def test_an_expected_error_inside_the_flow_prints_no_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "llmopt"), "nightly", "run", "--input", "data/incoming/*.parquet"],
        env={
            "LLMOPT_HOME": str(tmp_path),
            "PATH": str(BIN),
            "HOME": str(tmp_path),
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1
    output = done.stderr + done.stdout
    # no traceback through our code (the temporary server's own shutdown may log SQLAlchemy
    # pool noise from its subprocess, which is not about this error)
    for package in ("flows", "tasks"):
        assert f'File "{REPO_ROOT / package}' not in output, output[-3000:]
    assert not [line for line in output.splitlines() if line.startswith("tasks.")]  # exc line
    assert "nothing new tonight" in done.stderr  # the glob matched nothing: not an error
    errors = [line for line in done.stderr.splitlines() if line.startswith("llmopt: error: ")]
    assert len(errors) == 1 and "has no usage logs" in errors[0], done.stderr[-2000:]
