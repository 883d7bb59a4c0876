"""The batched monitoring inputs (read from daily rollups) equal the raw-scan reference.

``run_monitoring`` fetches every use case's aggregates from the daily rollups with a constant
number of statements grouped by use case (:func:`tasks.monitoring.run.fetch_monitoring_inputs`);
the reference is the raw-scan per-use-case functions of ``raw_scan.py`` (one statement each
over ``usage_logs``). Counts are equal, floating-point sums equal to the last bits of their
summation order, latency p95 within the bins' 1% bound, fixed-bin drift bins equal. The
simulated warehouse holds eight use cases (two seeds of the four simulated ones) plus awkward
ones: gaps of whole days, missing values, a use case that only starts on the night, one that
stopped before it, one never seen.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, cast

import duckdb
import numpy as np
import pyarrow.compute as pc
import pytest

from strategies.monitor.degradation import ApprovedConfig
from tasks.core.settings import load_settings
from tasks.monitoring.run import (
    CATEGORICAL_FIELDS,
    NUMERIC_FIELDS,
    MonitoringConfig,
    UseCaseReport,
    analyse_use_case,
    apply_monitoring_schema,
    fetch_monitoring_inputs,
    known_production_config,
    load_monitoring_config,
    refresh_monitoring_rollups,
    report_to_dict,
    run_monitoring,
)
from tasks.simulation import SimulationSpec, ground_truth, simulate
from tasks.simulation.demo_config import DEMO_CONFIG_DIR
from tasks.warehouse.connection import MeasuredConnection, apply_schema

BASE = ("code-review", "sales-email", "support-summarize", "ticket-classify")
COPIES = tuple(f"{name}-b" for name in BASE)
NEW, STOPPED, NEVER = "brand-new", "stopped", "never-seen"
NAMES = (*BASE, *COPIES, NEW, STOPPED, NEVER)
NIGHTS = (
    dt.date(2026, 10, 5),  # reference window mostly before the data starts
    dt.date(2026, 10, 21),  # sales-email drift starts
    dt.date(2026, 10, 26),  # code-review cost spike
    dt.date(2026, 10, 30),
)
ROWS_PER_DAY = 220


@pytest.fixture(scope="module")
def world(load_rows: Callable[[Any, Any], int]) -> Iterator[dict[str, Any]]:
    con = duckdb.connect()
    # one thread: floating-point sums then add rows in table order, in the reference and in the
    # batched statements alike (with several threads even the reference may differ run to run
    # in the last bits, partial sums being combined in any order)
    con.execute("SET threads = 1")
    apply_schema(con)
    apply_monitoring_schema(con)
    spec = SimulationSpec(include_cost=True, requests_per_day=dict.fromkeys(BASE, ROWS_PER_DAY))
    load_rows(con, simulate(spec))
    other = simulate(dataclasses.replace(spec, seed=spec.seed + 1))
    load_rows(
        con,
        other.set_column(
            other.schema.get_field_index("use_case"),
            "use_case",
            pc.binary_join_element_wise(other["use_case"], "b", "-"),
        ).set_column(
            other.schema.get_field_index("request_id"),
            "request_id",
            pc.binary_join_element_wise(other["request_id"], "b", "-"),
        ),
    )
    # awkward shapes: days without traffic, missing values, short-lived use cases
    con.execute(
        """
        DELETE FROM usage_logs WHERE use_case = 'sales-email-b'
            AND day IN ('2026-10-12', '2026-10-13', '2026-10-29');
        DELETE FROM usage_logs WHERE use_case = 'ticket-classify-b'
            AND ts >= '2026-10-30 05:00:00+00' AND ts < '2026-10-30 09:00:00+00';
        UPDATE usage_logs SET quality = NULL, task_type = NULL, ttft_ms = NULL
            WHERE use_case = 'code-review-b' AND source_line % 7 = 0;
        UPDATE usage_logs SET language = NULL WHERE use_case = 'support-summarize-b';
        INSERT INTO usage_logs BY NAME
            SELECT * REPLACE ('brand-new' AS use_case, request_id || '-new' AS request_id)
            FROM usage_logs WHERE use_case = 'sales-email' AND day >= '2026-10-26'
                AND source_line % 3 = 0;
        INSERT INTO usage_logs BY NAME
            SELECT * REPLACE ('stopped' AS use_case, request_id || '-stop' AS request_id)
            FROM usage_logs WHERE use_case = 'code-review' AND day <= '2026-10-24';
        """
    )
    truth = ground_truth(spec)
    approved: dict[str, list[ApprovedConfig]] = {}
    for name, uc in truth.use_cases.items():
        approved[name] = [
            ApprovedConfig(
                config_id=c.config_id,
                quality=c.true_mean_quality,
                cost_per_request=c.true_mean_cost_usd,
                latency_p95_ms=c.true_p95_latency_ms,
                approved_at="2026-09-10",
                is_production=c.config_id == uc.production_config_id,
            )
            for c in sorted(uc.configs, key=lambda c: c.config_id)
            if c.propensity > 0
        ]
    # production: from the registry (base use cases), named by the caller (one, and one id
    # nobody served), inferred from traffic (the others)
    production = {"code-review-b": truth.use_cases["code-review"].production_config_id}
    production |= {"sales-email-b": "no-such-config"}
    refresh_monitoring_rollups(con)
    yield {"con": con, "approved": approved, "production": production}
    con.close()


def _config(**changes: Any) -> MonitoringConfig:
    """The demo's monitoring config (the simulated use cases' rules), hourly series on, every
    monitored field."""
    options: dict[str, Any] = {
        "hourly": True,
        "numeric_fields": NUMERIC_FIELDS,
        "categorical_fields": CATEGORICAL_FIELDS,
    }
    home = tempfile.mkdtemp(prefix="monitor-")
    env = {"LLMOPT_HOME": home, "LLMOPT_CONFIG_DIR": str(DEMO_CONFIG_DIR)}
    config = load_monitoring_config(load_settings(env=env))
    return dataclasses.replace(config, **(options | changes))


def _known(world: dict[str, Any], name: str, config: MonitoringConfig) -> str | None:
    return known_production_config(
        name,
        config,
        production_config_id=world["production"].get(name),
        approved_configs=world["approved"].get(name, ()),
    )


def decisions(report: UseCaseReport) -> dict[str, Any]:
    """What a monitoring night decides for a use case (no floating-point details)."""
    return {
        "status": report.status,
        "production": report.production_config_id,
        "drifted": report.drifted_fields,
        "analysable_drift": tuple(d.feature for d in report.drift if d.analysable),
        "fired": tuple(r.rule for r in report.rules if r.fired),
        "changes": tuple((s.metric, s.granularity, s.recent_change_points) for s in report.series),
        "alerts": tuple((a.kind, a.name, a.severity) for a in report.alerts),
        "action": None if report.action is None else report.action.kind,
        "target": None if report.action is None else report.action.target_config_id,
    }


@pytest.mark.parametrize(
    "as_of",
    # the first two nights in the edit loop (make test-fast), all four in make test
    [*NIGHTS[:2], *(pytest.param(night, marks=pytest.mark.slow) for night in NIGHTS[2:])],
    ids=str,
)
def test_rollup_inputs_equal_the_raw_scan_reference(
    world: dict[str, Any], raw_scan: ModuleType, as_of: dt.date
) -> None:
    con, config = world["con"], _config()
    known = {name: _known(world, name, config) for name in NAMES}
    batched = fetch_monitoring_inputs(
        con, NAMES, as_of=as_of, config=config, production_configs=known
    )
    assert list(batched) == list(NAMES)
    for name in NAMES:
        want = raw_scan.reference_inputs(con, name, as_of=as_of, config=config, known=known[name])
        raw_scan.assert_inputs_close(batched[name], want)
    # the cases the comparison must have met, so it is not vacuous
    night = {name: batched[name] for name in NAMES}
    assert night[NEVER].current_all.n == 0 and night[NEVER].production_config_id is None
    assert night[NEVER].numeric["latency_ms"][0].size == 0
    assert night["sales-email-b"].baseline is not None and night["sales-email-b"].baseline.n == 0
    assert night["code-review"].current_all.latency_p95 is not None
    assert "(missing)" in night["support-summarize-b"].categorical["language"][0]
    if as_of == dt.date(2026, 10, 30):
        assert night[STOPPED].current_all.n == 0 and night[STOPPED].production_config_id
        assert night[NEW].numeric["input_tokens"][1].sum() > 0  # reference days before it began
        assert np.isnan(night["sales-email-b"].daily["quality"]).sum() == 3
        hours = night["ticket-classify-b"].hourly
        assert hours is not None
        gap = [f"2026-10-30T0{h}:00:00" for h in range(5, 9)]
        assert np.isnan(hours["requests"][[hours["periods"].index(p) for p in gap]]).all()
    if as_of == dt.date(2026, 10, 5):
        assert np.isnan(night["code-review"].daily["requests"]).sum() == 28 - 5


#: PSI of the same data on the fixed drift bins and on exact quantile edges: the decile groups
#: end at a fine bin's top instead of an exact reference decile, PSI's own sampling noise is
#: about (K - 1)(1/n + 1/m) (0.04 for 3000 vs 220 rows); relative on large PSI
PSI_TOLERANCE = 0.06
KS_TOLERANCE = 0.02


def assert_drift_comparable(got: UseCaseReport, want: UseCaseReport, config: Any) -> None:
    bar = config.drift.psi_alert
    for g, w in zip(got.drift, want.drift, strict=True):
        assert (g.feature, g.analysable, g.n_reference, g.n_current) == (
            w.feature,
            w.analysable,
            w.n_reference,
            w.n_current,
        )
        if not g.analysable or g.kind == "categorical":
            assert g.drift_detected == w.drift_detected and g.chi2_pvalue == w.chi2_pvalue
            continue
        assert g.psi is not None and w.psi is not None, g.feature
        assert g.ks_statistic is not None and w.ks_statistic is not None, g.feature
        assert abs(g.psi - w.psi) <= PSI_TOLERANCE * (1 + w.psi), g.feature
        assert abs(g.ks_statistic - w.ks_statistic) <= KS_TOLERANCE, g.feature
        borderline = min(abs(g.psi - bar), abs(w.psi - bar)) <= PSI_TOLERANCE
        assert g.drift_detected == w.drift_detected or borderline, g.feature


@pytest.mark.slow  # three analyses of eleven use cases per night (~30 s in all)
@pytest.mark.parametrize("as_of", NIGHTS, ids=str)
def test_run_monitoring_decides_as_the_raw_scan_reference(
    world: dict[str, Any], raw_scan: ModuleType, as_of: dt.date
) -> None:
    con, approved, production = world["con"], world["approved"], world["production"]
    config = _config()
    report = run_monitoring(
        con,
        as_of=as_of,
        config=config,
        approved_configs=approved,
        production_configs=production,
        use_cases=NAMES,
        record=False,
    )
    assert [u.use_case for u in report.use_cases] == list(NAMES)
    for uc in report.use_cases:
        name = uc.use_case
        options: dict[str, Any] = {
            "as_of": as_of,
            "config": config,
            "approved_configs": approved.get(name, ()),
            "production_config_id": production.get(name),
        }
        # the same rollup inputs fetched for one use case: the same report exactly
        assert report_to_dict(analyse_use_case(con, name, **options)) == report_to_dict(uc)
        # the raw-scan inputs on the same fixed bins: the same decisions
        raw = raw_scan.reference_inputs(
            con, name, as_of=as_of, config=config, known=_known(world, name, config)
        )
        assert decisions(uc) == decisions(analyse_use_case(con, name, inputs=raw, **options))
        # the quantile-edge bins of before: the same statistics within their noise, the same
        # drift decisions except where PSI sits on the alert bar either way
        before = analyse_use_case(
            con,
            name,
            inputs=raw_scan.reference_inputs(
                con,
                name,
                as_of=as_of,
                config=config,
                known=_known(world, name, config),
                quantile_edges=True,
            ),
            **options,
        )
        assert_drift_comparable(uc, before, config)
    statuses = {u.use_case: u.status for u in report.use_cases}
    assert statuses[NEVER] == "no_data"
    if as_of == dt.date(2026, 10, 21):
        sales = next(u for u in report.use_cases if u.use_case == "sales-email")
        assert sales.status == "critical" and {"input_tokens", "quality"} <= set(
            sales.drifted_fields
        )
        assert statuses["support-summarize"] == "ok"


@pytest.mark.parametrize("hourly", [False, True])
def test_statements_do_not_grow_with_the_number_of_use_cases(
    world: dict[str, Any], hourly: bool
) -> None:
    config = _config(hourly=hourly)
    # the first hourly read backfills the hourly latency bins (not in the nightly rollups)
    fetch_monitoring_inputs(world["con"], NAMES[:1], as_of=NIGHTS[-1], config=config)
    counts = []
    for names in (NAMES[:1], NAMES[:3], NAMES):
        counting = MeasuredConnection(world["con"])
        inputs = fetch_monitoring_inputs(
            cast(duckdb.DuckDBPyConnection, counting), names, as_of=NIGHTS[-1], config=config
        )
        assert len(inputs) == len(names)
        counts.append(counting.tally.statements)
        report = run_monitoring(
            world["con"], as_of=NIGHTS[-1], config=config, use_cases=names, record=False
        )
        assert len(report.use_cases) == len(names)
    # production ids + stats (3) + daily (2) (+ hourly (2) + its bins' currency check (1))
    # + categories + bins = 8 (+ 3)
    assert counts[0] == counts[1] == counts[2] == 8 + 3 * hourly, counts
