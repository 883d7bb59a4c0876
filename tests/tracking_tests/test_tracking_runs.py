from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tasks.core.settings import Settings
from tasks.nightly.tracking import RunRecord, Tracker


def _png(path: Path) -> Path:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    fig.savefig(path)
    plt.close(fig)
    return path


@pytest.mark.slow  # ~1.8 s: nested MLflow runs with figures in a file store
def test_nested_runs_metrics_and_artifacts_land_in_the_configured_store(
    settings: Settings, tmp_path: Path
) -> None:
    tracker = Tracker(settings, experiment_name="test-nightly")
    parent = tracker.start_run("nightly-2026-10-30", tags={"as_of": "2026-10-30"})
    ids = tracker.log_tree(
        RunRecord(
            name="support-summarize",
            tags={"use_case": "support-summarize"},
            params={"chosen_config": {"model": "gpt-4o-mini", "temperature": 0.3}},
            metrics={
                "quality_mean": 0.71,
                "spend_usd": 12.5,
                "latency_p95_ms": None,
                "error_rate": math.nan,
            },
            json_artifacts={"reports/decision.json": {"decision": "ship treatment"}},
            files=[_png(tmp_path / "frontier.png")],
            children=[RunRecord(name="experiments", metrics={"experiments_shipped": 1})],
        ),
        parent,
    )
    tracker.end_run(parent)

    client = tracker.client
    child = client.get_run(ids["support-summarize"])
    grandchild = client.get_run(ids["support-summarize/experiments"])
    assert child.data.tags["mlflow.parentRunId"] == parent
    assert grandchild.data.tags["mlflow.parentRunId"] == child.info.run_id
    assert child.data.metrics == {"quality_mean": 0.71, "spend_usd": 12.5}
    assert child.data.params["chosen_config"] == '{"model": "gpt-4o-mini", "temperature": 0.3}'
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id, "plots")}
    artifacts |= {a.path for a in client.list_artifacts(child.info.run_id, "reports")}
    assert artifacts == {"plots/frontier.png", "reports/decision.json"}
    # artifacts are under the configured root, not ./mlruns of the working directory
    assert child.info.artifact_uri.startswith(settings.mlflow_artifact_root.resolve().as_uri())
    assert client.get_run(parent).info.status == "FINISHED"
