"""The batched monitoring inputs equal the per-use-case reference functions, exactly.

``run_monitoring`` fetches every use case's aggregates with a constant number of statements
grouped by use case (:func:`tasks.monitoring.run.fetch_monitoring_inputs`); the per-use-case
functions (``numeric_bins``, ``categorical_counts``, ``metric_series``, ``window_stats``,
``infer_production_config``) are the reference. The simulated warehouse holds eight use cases
(two seeds of the four simulated ones) plus awkward ones: gaps of whole days, missing values,
a use case that only starts on the night, one that stopped before it, one never seen.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, cast

import duckdb
import numpy as np
import pyarrow.compute as pc
import pytest

from strategies.monitor.degradation import ApprovedConfig
from tasks.core.settings import load_settings
from tasks.monitoring import histograms
from tasks.monitoring.run import (
    CATEGORICAL_FIELDS,
    NUMERIC_FIELDS,
    MonitoringConfig,
    MonitoringInputs,
    Windows,
    analyse_use_case,
    apply_monitoring_schema,
    categorical_counts,
    fetch_monitoring_inputs,
    hourly_range,
    infer_production_config,
    known_production_config,
    load_monitoring_config,
    metric_series,
    numeric_bins,
    report_to_dict,
    run_monitoring,
    series_range,
    window_stats,
)
from tasks.simulation.demo_config import DEMO_CONFIG_DIR
from tasks.simulation.generate import SimulationSpec, ground_truth, simulate
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


def reference_inputs(
    con: duckdb.DuckDBPyConnection,
    name: str,
    *,
    as_of: dt.date,
    config: MonitoringConfig,
    known: str | None,
) -> MonitoringInputs:
    """One use case's inputs from the per-use-case functions (one statement each)."""
    windows = Windows.for_night(as_of, config)
    production = known or infer_production_config(
        con, name, windows.reference_start, windows.current_end
    )
    series_start, series_end = series_range(as_of, config)
    hour_start, hour_end = hourly_range(as_of, config)
    return MonitoringInputs(
        use_case=name,
        windows=windows,
        production_config_id=production,
        current_all=window_stats(con, name, None, windows.current_start, windows.current_end),
        baseline=None
        if production is None
        else window_stats(con, name, production, windows.reference_start, windows.reference_end),
        current=None
        if production is None
        else window_stats(con, name, production, windows.current_start, windows.current_end),
        numeric={
            c: numeric_bins(con, name, c, windows, quantile_bins=config.quantile_bins)
            for c in config.numeric_fields
        },
        categorical={
            c: categorical_counts(con, name, c, windows) for c in config.categorical_fields
        },
        daily=metric_series(con, name, start=series_start, end=series_end),
        hourly=metric_series(con, name, start=hour_start, end=hour_end, granularity="hour")
        if config.hourly
        else None,
    )


def _assert_series_equal(got: Any, want: Any) -> None:
    assert got["periods"] == want["periods"]
    assert set(got) == set(want)
    for metric in want:
        if metric != "periods":
            assert got[metric].dtype == want[metric].dtype
            assert np.array_equal(got[metric], want[metric], equal_nan=True), metric


def assert_same_inputs(got: MonitoringInputs, want: MonitoringInputs) -> None:
    assert got.use_case == want.use_case and got.windows == want.windows
    assert got.production_config_id == want.production_config_id
    assert got.current_all == want.current_all
    assert got.baseline == want.baseline and got.current == want.current
    assert set(got.numeric) == set(want.numeric)
    for column, (edges, ref, cur) in want.numeric.items():
        g_edges, g_ref, g_cur = got.numeric[column]
        assert np.array_equal(g_edges, edges), column
        assert np.array_equal(g_ref, ref) and np.array_equal(g_cur, cur), column
        assert g_edges.dtype == g_ref.dtype == g_cur.dtype == edges.dtype
    assert set(got.categorical) == set(want.categorical)
    for column, (categories, ref, cur) in want.categorical.items():
        g_categories, g_ref, g_cur = got.categorical[column]
        assert g_categories == categories, column
        assert np.array_equal(g_ref, ref) and np.array_equal(g_cur, cur), column
    _assert_series_equal(got.daily, want.daily)
    assert (got.hourly is None) == (want.hourly is None)
    if want.hourly is not None:
        _assert_series_equal(got.hourly, want.hourly)


@pytest.mark.parametrize("as_of", NIGHTS, ids=str)
def test_batched_inputs_equal_the_per_use_case_functions(
    world: dict[str, Any], as_of: dt.date
) -> None:
    con, config = world["con"], _config()
    known = {name: _known(world, name, config) for name in NAMES}
    batched = fetch_monitoring_inputs(
        con, NAMES, as_of=as_of, config=config, production_configs=known
    )
    assert list(batched) == list(NAMES)
    for name in NAMES:
        want = reference_inputs(con, name, as_of=as_of, config=config, known=known[name])
        assert_same_inputs(batched[name], want)
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


def test_bin_counts_split_over_several_statements_are_the_same(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config()
    known = {name: _known(world, name, config) for name in NAMES}
    results, statements = [], []
    for max_edges in (histograms.HISTOGRAM_MAX_EDGES, 150):  # 150: about one use case each
        monkeypatch.setattr(histograms, "HISTOGRAM_MAX_EDGES", max_edges)
        counting = MeasuredConnection(world["con"])
        results.append(
            fetch_monitoring_inputs(
                cast(duckdb.DuckDBPyConnection, counting),
                NAMES,
                as_of=NIGHTS[1],
                config=config,
                production_configs=known,
            )
        )
        statements.append(counting.tally.statements)
    # one bin-count statement per use case with rows that night: all but NEW (starts on the
    # 26th) and NEVER
    assert statements[1] == statements[0] - 1 + len(NAMES) - 2
    for name in NAMES:
        assert_same_inputs(results[1][name], results[0][name])


@pytest.mark.parametrize("as_of", NIGHTS, ids=str)
def test_run_monitoring_reports_equal_the_per_use_case_analysis(
    world: dict[str, Any], as_of: dt.date
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
        want = report_to_dict(
            analyse_use_case(
                con,
                name,
                inputs=reference_inputs(
                    con, name, as_of=as_of, config=config, known=_known(world, name, config)
                ),
                **options,
            )
        )
        assert report_to_dict(uc) == want
        assert report_to_dict(analyse_use_case(con, name, **options)) == want
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
    counts = []
    for names in (NAMES[:1], NAMES[:3], NAMES):
        counting = MeasuredConnection(world["con"])
        report = run_monitoring(
            cast(duckdb.DuckDBPyConnection, counting),
            as_of=NIGHTS[-1],
            config=config,
            use_cases=names,
            record=False,
        )
        assert len(report.use_cases) == len(names)
        counts.append(counting.tally.statements)
    # schema + history + production ids + stats + daily (+ hourly) + categories + bins (2)
    assert counts[0] == counts[1] == counts[2] <= 9 + hourly, counts
