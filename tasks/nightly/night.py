"""The night itself: which night, which use cases, ingest, storages, and the experiment step.

See :mod:`tasks.nightly.steps` for how the steps fit together. The first step after ingest
(:func:`resolve_night`) refreshes the daily rollups of every capability
(:data:`tasks.nightly.rollup_set.ALL_SPECS`, only the days that changed); what follows reads
rollups, not the raw window (``ARM_CONFIG_SQL`` / ``EXPERIMENT_SHARE_SQL`` are the raw-scan
references, ``ROLLUP_*`` what the night runs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from strategies.rollout_guard import RolloutGuard
from strategies.traffic import (
    TrafficPolicy,
)
from tasks.core.config import ConfigNotFoundError, load_config
from tasks.core.errors import LlmoptError
from tasks.core.settings import Settings
from tasks.warehouse.config_metrics import CONFIG_KEY_SQL
from tasks.warehouse.connection import connect
from tasks.warehouse.dask_rollups import refresh_night_rollups
from tasks.warehouse.rollup_specs import ARM_DAY
from tasks.warehouse.rollups import COVERAGE_SPEC

log = logging.getLogger(__name__)

PARAM_FIELDS = ("model", "provider", "prompt_id", "temperature", "top_p", "max_tokens")


class NothingToAnalyse(LlmoptError, RuntimeError):
    """The warehouse has no traffic for the requested night or use cases."""


# --------------------------------------------------------------------------------------------
# night and options
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Night:
    as_of: dt.date
    use_cases: tuple[str, ...]
    first_day: dt.date
    last_day: dt.date


@dataclasses.dataclass(frozen=True)
class NightOptions:
    lookback_days: int = 14
    search_candidates: int = 3
    dry_run: bool = False
    switches: Mapping[str, bool] = dataclasses.field(default_factory=dict)
    policy: TrafficPolicy = dataclasses.field(default_factory=TrafficPolicy)
    guard: RolloutGuard = dataclasses.field(default_factory=RolloutGuard)
    max_rollout_holds: int = 3
    bandit_floor: float = 0.02

    def enabled(self, strategy: str) -> bool:
        return bool(self.switches.get(strategy, True))

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any], settings: Settings) -> NightOptions:
        """Flow parameters on top of ``data/config/nightly.toml`` (missing file: defaults)."""
        try:
            config = load_config("nightly", settings)
        except ConfigNotFoundError:  # a malformed file must fail, not fall back to defaults
            config = {}
        traffic = config.get("traffic", {})
        rollout = dict(config.get("rollout", {}))
        max_holds = int(rollout.pop("max_holds", 3))
        return cls(
            lookback_days=int(params.get("lookback_days", 14)),
            search_candidates=int(params.get("search_candidates", 3)),
            dry_run=bool(params.get("dry_run", False)),
            switches=dict(params.get("strategies", {})),
            policy=TrafficPolicy(
                max_exploration_share=float(traffic.get("max_exploration_share", 0.10)),
                min_arm_share=float(traffic.get("min_arm_share", 0.01)),
                rollout_stages=tuple(traffic.get("rollout_stages", (0.05, 0.25, 0.5, 1.0))),
            ),
            guard=RolloutGuard(**({"max_nights": max_holds + 1} | rollout)),
            max_rollout_holds=max_holds,
        )


@contextlib.contextmanager
def _warehouse(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(settings)
    try:
        yield con
    finally:
        con.close()


def run_key_for(night: Night) -> str:
    """Stable id of a night: re-running the same night overwrites its stored results."""
    return f"night-{night.as_of.isoformat()}"


def ingest_new_logs(settings: Settings, paths: Sequence[str]) -> dict[str, Any]:
    """Ingest files / globs; per-file accounting, validation results and totals as a dict.

    A file that cannot be read fails this step with its name (Prefect retries it); rows that
    break a rule are quarantined with a reason and counted, never dropped.
    """
    from tasks.ingest.pipeline import ingest_paths

    report = ingest_paths(list(paths), settings=settings)
    summary = report.to_dict()
    if report.failed:
        names = ", ".join(f"{f.path}: {f.error}" for f in report.failed)
        raise RuntimeError(f"{len(report.failed)} file(s) failed to ingest: {names}")
    return summary


def resolve_night(settings: Settings, *, as_of: dt.date | None, use_cases: Sequence[str]) -> Night:
    """The night to analyse (default: the latest day with traffic) and its use cases.

    Refreshes the daily rollups first (the days ingest changed), then reads the days and use
    cases from them.
    """
    from tasks.nightly.rollup_set import ALL_SPECS

    with _warehouse(settings) as con:
        refresh_night_rollups(con, ALL_SPECS, settings)  # on Dask with LLMOPT_DASK_ADDRESS
        first, last = con.execute(
            f"SELECT min(day), max(day) FROM {COVERAGE_SPEC.name}"
        ).fetchall()[0] or (None, None)
        if last is None:
            raise NothingToAnalyse(
                f"the warehouse {settings.warehouse_path} has no usage logs yet: "
                "ingest some first (llmopt ingest PATH)"
            )
        night = as_of or last
        present = [
            row[0]
            for row in con.execute(
                f"SELECT DISTINCT use_case FROM {COVERAGE_SPEC.name} WHERE day <= ? ORDER BY 1",
                [night],
            ).fetchall()
        ]
    unknown = sorted(set(use_cases) - set(present))
    if unknown:
        raise NothingToAnalyse(f"no traffic up to {night} for use case(s): {', '.join(unknown)}")
    chosen = tuple(use_cases) if use_cases else tuple(present)
    if not chosen:
        raise NothingToAnalyse(f"no traffic on or before {night}")
    prepare_storages(settings)
    return Night(as_of=night, use_cases=chosen, first_day=first, last_day=last)


def _store(settings: Settings) -> Any:
    from tasks.registry.store import RegistryStore

    return RegistryStore.from_settings(settings)


def prepare_storages(settings: Settings) -> None:
    """Create the registry and Optuna tables once, before use cases fan out in parallel.

    SQLite serialises writers; several threads racing to ``CREATE TABLE`` the same file on a
    first night fail with "database is locked", so this step runs alone.
    """
    from tasks.search.study import load_search_config, open_storage

    _store(settings).dispose()
    open_storage(load_search_config(settings).storage or settings.optuna_storage)


def artifact_dir(settings: Settings, night: Night) -> Path:
    """Where a night's plots and reports are written before they go to MLflow."""
    path = settings.warehouse_path.parent / "runs" / run_key_for(night)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------
# experiments
# --------------------------------------------------------------------------------------------

ARM_CONFIG_SQL = f"""
SELECT experiment_id, variant_id, any_value(use_case) AS use_case,
       {CONFIG_KEY_SQL} AS config_key, count(*) AS n,
       any_value(model) AS model, any_value(provider) AS provider,
       any_value(prompt_id) AS prompt_id, any_value(temperature) AS temperature,
       any_value(top_p) AS top_p, any_value(max_tokens) AS max_tokens
FROM usage_logs
WHERE experiment_id IS NOT NULL AND variant_id IS NOT NULL AND day <= $as_of
GROUP BY ALL
"""

EXPERIMENT_SHARE_SQL = """
SELECT use_case, experiment_id, count(*) / any_value(total) AS share
FROM usage_logs
JOIN (SELECT use_case AS uc, count(*) AS total FROM usage_logs WHERE day = $as_of GROUP BY 1)
  ON uc = use_case
WHERE day = $as_of AND experiment_id IS NOT NULL
GROUP BY ALL
"""

ROLLUP_ARM_CONFIG_SQL = f"""
SELECT experiment_id, variant_id, any_value(use_case) AS use_case, config_key,
       CAST(sum(n) AS BIGINT) AS n,
       any_value(model) AS model, any_value(provider) AS provider,
       any_value(prompt_id) AS prompt_id, any_value(temperature) AS temperature,
       any_value(top_p) AS top_p, any_value(max_tokens) AS max_tokens
FROM {ARM_DAY.name}
WHERE variant_id IS NOT NULL AND day <= $as_of
GROUP BY experiment_id, variant_id, config_key
"""

ROLLUP_EXPERIMENT_SHARE_SQL = f"""
SELECT a.use_case, a.experiment_id, sum(a.n) / any_value(c.n) AS share
FROM {ARM_DAY.name} AS a
JOIN {COVERAGE_SPEC.name} AS c ON c.use_case = a.use_case AND c.day = a.day
WHERE a.day = $as_of
GROUP BY a.use_case, a.experiment_id
"""


def _params_of(row: Mapping[str, Any]) -> dict[str, Any]:
    params = {
        name: row[name]
        for name in PARAM_FIELDS
        if row.get(name) is not None and not pd.isna(row[name])
    }
    if "max_tokens" in params:
        params["max_tokens"] = int(params["max_tokens"])
    for name in ("temperature", "top_p"):
        if name in params:
            params[name] = float(params[name])
    return params


def analyse_experiments(settings: Settings, night: Night, *, run_key: str) -> list[dict[str, Any]]:
    """Analyse every experiment up to the night; each report gains its use case, arm configs
    (the configuration each variant served) and its observed traffic share that night."""
    from tasks.experiments.analyze import analyze_experiments, plot_experiment_intervals
    from tasks.nightly.experiment_plans import planned_specs, with_planned_specs

    # experiments the flow created (pre-registered designs in the serving registry versions)
    config = with_planned_specs(
        load_config("experiments", settings), planned_specs(settings, night.use_cases)
    )
    from tasks.nightly.rollup_set import ALL_SPECS

    with _warehouse(settings) as con:
        # a no-op after resolve_night (reads lake_parts only in lake mode); run alone, it is not
        refresh_night_rollups(con, ALL_SPECS, settings)
        reports = analyze_experiments(con, config, as_of=night.as_of, run_id=run_key)
        arm_rows = (
            con.execute(ROLLUP_ARM_CONFIG_SQL, {"as_of": night.as_of}).df().to_dict("records")
        )
        shares = {
            (r["use_case"], r["experiment_id"]): float(r["share"])
            for r in con.execute(ROLLUP_EXPERIMENT_SHARE_SQL, {"as_of": night.as_of})
            .df()
            .to_dict("records")
        }
    arms: dict[str, dict[str, dict[str, Any]]] = {}
    use_case_of: dict[str, str] = {}
    for row in sorted(arm_rows, key=lambda r: -int(r["n"])):  # modal config per variant
        variants = arms.setdefault(row["experiment_id"], {})
        use_case_of.setdefault(row["experiment_id"], row["use_case"])
        variants.setdefault(
            row["variant_id"], {"config_key": row["config_key"], "params": _params_of(row)}
        )
    configured = config.get("experiments", {})
    out: list[dict[str, Any]] = []
    for report in reports:
        item = report.to_dict()
        exp_id = report.experiment_id
        use_case = configured.get(exp_id, {}).get("use_case") or use_case_of.get(exp_id)
        item["use_case"] = use_case
        item["arm_configs"] = arms.get(exp_id, {})
        item["weights"] = configured.get(exp_id, {}).get("weights", {})
        item["traffic_share"] = shares.get((use_case, exp_id), 0.0)
        out.append(item)
    if reports:
        plot = plot_experiment_intervals(reports, artifact_dir(settings, night) / "experiments.png")
        for item in out:
            item["plot"] = str(plot)
    return out


# --------------------------------------------------------------------------------------------
# one use case
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UseCaseOutcome:
    """Everything decided for one use case tonight; the publish step needs only this."""

    use_case: str
    as_of: dt.date
    run_key: str
    current_version: int | None
    base_version: int  # latest registry version when the plan was computed (stale check)
    production_config_id: str
    plan: dict[str, Any]
    proposed_config: dict[str, Any]
    needs_approval: bool
    guardrails_passed: bool
    guardrails: dict[str, bool]
    registry_action: str  # publish | rollback | none
    rollback_to_version: int | None
    headline: str
    reasons: tuple[str, ...]
    metrics: dict[str, float | None]
    strategies: dict[str, Any]
    plots: tuple[str, ...]
    evidence: dict[str, Any]
