"""``make demo``: a simulated month of traffic through the nightly flow, on embedded defaults.

The demo lives in its own home (``var/demo`` under the repository: warehouse, MLflow store,
Optuna studies, registry), recreated on each run so it never touches ``data/warehouse.duckdb``.

1. Simulate ``days`` of traffic for four use cases (one file per day, with a ground truth).
2. Run the nightly flow for each of the last ``nights`` days: the first night ingests every
   earlier day, each later night ingests its own day.
3. Close the loop: after each night, the exploration and rollout arms the registry now serves
   get simulated traffic on the next day (``simulate_config_traffic``), so search trials are
   told real observations and rollouts are judged on real traffic.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from tasks.core.errors import LlmoptError
from tasks.core.settings import REPO_ROOT, Settings, load_settings

DEMO_HOME = REPO_ROOT / "var" / "demo"


class DemoOptionError(LlmoptError, ValueError):
    """The demo's options do not fit together (printed as one line by the CLI)."""


def _progress(message: str) -> None:
    # stderr: the result (human or --json) stays alone on stdout
    print(f"demo: {message}", file=sys.stderr, flush=True)


def _serve_published_arms(
    settings: Settings, spec: Any, day_index: int, out_dir: Path, base_ids: set[str]
) -> list[Path]:
    """Simulated traffic for tomorrow's arms that the base simulation does not already serve."""
    import pyarrow.parquet as pq

    from tasks.registry.store import NotFoundError, RegistryStore
    from tasks.simulation import simulate_config_traffic

    store = RegistryStore.from_settings(settings)
    written: list[Path] = []
    try:
        for use_case in store.use_cases():
            try:
                version = store.get(use_case, "production")
            except NotFoundError:
                continue
            daily = spec.requests_per_day.get(use_case, 0)
            for arm in version.config.arms:
                if arm.role not in {"exploration", "rollout"} or not arm.config_id:
                    continue
                if arm.config_id in base_ids:
                    continue
                n = round(arm.weight * daily)
                if n <= 0:
                    continue
                seed = int(
                    hashlib.sha256(f"{arm.config_id}|{day_index}".encode()).hexdigest()[:8], 16
                )
                config = arm.params.to_dict() | {"config_id": arm.config_id}
                table = simulate_config_traffic(
                    spec, use_case, config, n, day_index, seed, propensity=arm.weight
                )
                path = out_dir / f"served-{day_index:03d}-{use_case}-{len(written):03d}.parquet"
                pq.write_table(table, path)
                written.append(path)
    finally:
        store.dispose()
    return written


def run_demo(
    *,
    days: int = 30,
    nights: int = 10,
    rows_per_day: int | None = None,
    seed: int = 7,
    home: Path | None = None,
) -> dict[str, Any]:
    """Run the demo and return what happened plus where to look (``home``: default var/demo)."""
    import pyarrow.parquet as pq

    from flows.nightly import NightlyParameters, nightly_optimization
    from tasks.simulation import SimulationSpec, write_simulation
    from tasks.simulation.demo_config import DEMO_CONFIG_DIR
    from tasks.simulation.demo_story import write_story_days

    if days < 1:
        raise DemoOptionError(f"--days {days}: simulate at least one day")
    if not 1 <= nights <= days:
        raise DemoOptionError(
            f"--nights {nights} does not fit --days {days}: the nights run over the last "
            f"simulated days, so use 1 <= --nights <= --days (e.g. --days {max(nights, 1)} "
            f"--nights {max(nights, 1)})"
        )
    home = home or DEMO_HOME
    shutil.rmtree(home, ignore_errors=True)
    os.environ["LLMOPT_HOME"] = str(home)
    os.environ.setdefault("LLMOPT_CONFIG_DIR", str(DEMO_CONFIG_DIR))  # the simulator's use cases
    settings = load_settings().ensure_dirs()

    spec = SimulationSpec(
        seed=seed, days=days, total_rows=None if rows_per_day is None else rows_per_day * days
    )
    logs = settings.sim_dir / "logs"
    _progress(f"simulating {days} days of traffic into {logs} ...")
    sim = write_simulation(spec, logs, fmt="parquet")
    _progress(f"simulated {sim.rows:,} calls")
    by_day = sorted(sim.paths)
    base_ids = {
        str(v)
        for path in by_day[:1]
        for v in pq.read_table(path, columns=["config_id"]).column(0).unique().to_pylist()
    }
    first = days - nights
    # the story's use cases: a better config enters faq-answer's logs the day after the first night
    story = write_story_days(
        start=spec.start_date, days=days, candidate_from_day=first + 1, out_dir=logs, seed=seed
    )
    nightly: list[dict[str, Any]] = []
    early = [p for day in story[: first + 1] for p in day]
    pending = [str(p) for p in [*by_day[: first + 1], *early]]
    for index in range(first, days):
        as_of = spec.start_date + dt.timedelta(days=index)
        _progress(f"night {as_of} ({index - first + 1}/{nights}) ...")
        summary = nightly_optimization(
            params=NightlyParameters(as_of=as_of, input_paths=pending, approval="policy")
        )
        nightly.append(summary)
        failed = summary.get("failures") or {}
        _progress(
            f"night {as_of} done: {len(summary.get('use_cases', {}))} use case(s)"
            + (f", {len(failed)} FAILED" if failed else "")
        )
        if index + 1 < days:
            served = _serve_published_arms(settings, spec, index + 1, logs, base_ids)
            pending = [str(by_day[index + 1]), *map(str, story[index + 1]), *map(str, served)]
    return _report(settings, sim, nightly)


def _story(settings: Settings, nightly: list[dict[str, Any]]) -> list[str]:
    """Per use case: experiments, safety actions, promotions from logs, routing tables."""
    from tasks.registry.store import RegistryStore
    from tasks.simulation.demo_story import story_lines

    store = RegistryStore.from_settings(settings)
    try:
        versions = {uc: store.versions_of(uc) for uc in store.use_cases()}
    finally:
        store.dispose()
    return story_lines(nightly, versions)


def _report(settings: Settings, sim: Any, nightly: list[dict[str, Any]]) -> dict[str, Any]:
    last = nightly[-1]
    lines = [
        f"Simulated {sim.rows:,} calls over {len(sim.paths)} days into {sim.out_dir}",
        f"Ran {len(nightly)} nightly runs; the last one ({last['as_of']}):",
    ]
    for use_case, item in last.get("use_cases", {}).items():
        lines.append(f"  {use_case}: {item['headline']}")
    failures = {
        f"{n['as_of']} {uc}": err for n in nightly for uc, err in n.get("failures", {}).items()
    }
    for name, error in failures.items():
        lines.append(f"  FAILED {name}: {error}")
    lines += ["", "What happened, per use case:", *_story(settings, nightly), ""]
    for night in nightly:
        for use_case, item in night.get("use_cases", {}).items():
            interesting = [r for r in item.get("reasons", []) if "rollback" in r or "ships" in r]
            if (
                interesting
                or "circuit_breaker" in item["headline"]
                or "rollback" in item["headline"]
            ):
                lines.append(f"  {night['as_of']} {use_case}: {item['headline']}")
    lines += [
        "",
        "Where to look:",
        f"  MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}",
        "  Prefect UI: .venv/bin/prefect server start   (then re-run with PREFECT_API_URL set)",
        f"  Registry:   LLMOPT_HOME={settings.home} .venv/bin/llmopt registry serve"
        " --port 8765   ->  http://127.0.0.1:8765/v1/configs/support-summarize",
        f"  Snapshots:  {settings.registry_snapshot_dir}",
        f"  Warehouse:  LLMOPT_HOME={settings.home} .venv/bin/llmopt status",
    ]
    return {
        "home": str(settings.home),
        "rows": sim.rows,
        "nights": nightly,
        "ground_truth": str(sim.ground_truth_path),
        "failures": failures,
        "report_lines": lines,
    }


__all__ = ["DEMO_HOME", "run_demo"]
