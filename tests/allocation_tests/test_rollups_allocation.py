"""Allocation inputs on daily rollups equal the full scan, night by night, with late rows.

A simulated month is loaded one night at a time; some days' rows arrive three nights late, with
a few rows whose propensity is missing or out of range and whose quality is missing. After each
night's refresh of :data:`tasks.allocation.rollups.ALLOCATION_SPECS`, the routing inputs (router
statistics, off-policy sums, profiles, counts), the budget's daily spend, the bandit's feedback
counts and the off-policy cells equal the raw-scan reference (relative 1e-9).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from strategies.routing import RoutingObjective
from tasks.allocation.bandits import FEEDBACK_SQL
from tasks.allocation.budget import budget_report
from tasks.allocation.context_stats import routing_inputs
from tasks.allocation.offpolicy import logged_cells
from tasks.allocation.rollups import ALLOCATION_SPECS, FEEDBACK_ROLLUP_SQL, use_rollups
from tasks.simulation import SimulationSpec
from tasks.simulation.files import load_simulated
from tasks.warehouse.connection import connect
from tasks.warehouse.rollups import refresh_rollups

SPEC = SimulationSpec(
    days=30,
    requests_per_day={"support-summarize": 900, "sales-email": 600},
    include_cost=True,
    n_units=3000,
)
LATE_DAYS = {4, 12, 20, 27}
CHECK_NIGHTS = {7, 15, 23, 29}
RTOL = 1e-9
OBJECTIVE = RoutingObjective(
    kind="reward", quality_weight=1.0, cost_weight=40.0, latency_weight=1e-4, error_weight=0.5
)
BUDGET = {"defaults": {"monthly_budget_usd": 100.0}}


def _odd_rows(table: pa.Table) -> pa.Table:
    """40 copies with missing / zero / out-of-range propensities and missing quality."""
    rows = table.slice(0, 40)
    n = rows.num_rows
    propensity = [None] * 10 + [0.0] * 5 + [1.5] * 5 + rows["propensity"].to_pylist()[20:]
    quality = rows["quality"].to_pylist()[:30] + [None] * (n - 30)
    ids = pc.binary_join_element_wise(rows["request_id"], "odd", "-")
    for name, values in (
        ("propensity", pa.array(propensity, pa.float64())),
        ("quality", pa.array(quality, pa.float64())),
        ("request_id", ids),
    ):
        index = rows.schema.get_field_index(name)
        rows = rows.set_column(
            index, rows.schema.field(index), values.cast(rows.schema.field(index).type)
        )
    return rows


def _odd_rows_late(index: int, table: pa.Table) -> dict[int, list[pa.Table]]:
    """A late day's odd rows arrive with its late rows."""
    return {min(index + 3, SPEC.days - 1): [_odd_rows(table)]} if index in LATE_DAYS else {}


def _both(fn: Any, **kwargs: Any) -> tuple[Any, Any]:
    return fn(source="usage_logs", **kwargs), fn(source="rollups", **kwargs)


def _checks(con: Any, as_of: dt.date) -> dict[str, tuple[Any, Any]]:
    start = as_of - dt.timedelta(days=13)
    out: dict[str, tuple[Any, Any]] = {}
    for use_case in SPEC.use_cases:
        window = {"use_case": use_case, "start": start, "end": as_of}
        out[f"routing {use_case}"] = _both(routing_inputs, con=con, objective=OBJECTIVE, **window)
        for context in (None, "task_type", "region"):
            for reward in ("quality", "success"):
                out[f"logged {use_case} {context} {reward}"] = _both(
                    logged_cells, con=con, context=context, reward=reward, **window
                )
        out[f"feedback {use_case}"] = (
            sorted(con.execute(FEEDBACK_SQL, window).fetchall()),
            sorted(con.execute(FEEDBACK_ROLLUP_SQL, window).fetchall()),
        )
    out["budget"] = _both(budget_report, con=con, as_of=as_of, config=BUDGET)
    return out


@pytest.fixture(scope="module")
def month(late_nights: Any) -> Any:
    con = connect(path=":memory:")
    results: dict[int, dict[str, tuple[Any, Any]]] = {}
    for night, tables in late_nights(SPEC, LATE_DAYS, also=_odd_rows_late).items():
        for table in tables:
            load_simulated(con, table, label=f"night-{night}")
        assert not use_rollups(con, "auto")  # new rows: the rollups are stale until refreshed
        refresh_rollups(con, ALLOCATION_SPECS)
        assert use_rollups(con, "auto")
        if night in CHECK_NIGHTS:
            results[night] = _checks(con, SPEC.day(night))
    yield con, results
    con.close()


def _same(a: Any, b: Any, path: str) -> None:
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), path
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        x, y = float(a), float(b)
        if not (math.isnan(x) and math.isnan(y)):
            assert math.isclose(x, y, rel_tol=RTOL, abs_tol=1e-12), (path, x, y)
    elif isinstance(a, np.ndarray):
        np.testing.assert_allclose(a, b, rtol=RTOL, err_msg=path)
    else:
        assert a == b, (path, a, b)


@pytest.mark.slow
def test_allocation_inputs_equal_the_full_scan_every_checked_night(month: Any) -> None:
    _, results = month
    assert set(results) == CHECK_NIGHTS
    for night, checks in results.items():
        for name, (raw, rolled) in checks.items():
            _same(raw, rolled, f"night {night} {name}")


@pytest.mark.slow
def test_the_checks_see_every_kind_of_row(month: Any) -> None:
    """The equality above means something: cells, propensities, odd rows and spend are there."""
    _, results = month
    last = results[max(CHECK_NIGHTS)]
    routing = last["routing support-summarize"][0]
    assert routing.columns and all(c.stats and c.logged for c in routing.columns)
    assert routing.missing_propensity > 0 and routing.missing_quality > 0
    cells, counts = last["logged support-summarize task_type quality"][0]
    assert len(cells) > 3 and counts["invalid_propensity"] > 0 and counts["missing_reward"] > 0
    assert any(r.month_to_date_usd > 0 for r in last["budget"][0])
    assert any(pos > 0 for _, pos, _ in last["feedback support-summarize"][0])


def test_metadata_contexts_and_stale_rollups_fall_back_to_the_scan(
    con: Any, load_rows: Any
) -> None:
    load_rows(con, [{"use_case": "u", "timestamp": dt.datetime(2026, 10, 1, tzinfo=dt.UTC)}])
    assert not use_rollups(con, "auto")  # never rolled up
    refresh_rollups(con, ALLOCATION_SPECS)
    assert use_rollups(con, "auto")
    assert not use_rollups(con, "auto", ["metadata.team"])
    with pytest.raises(ValueError, match="not in rollup_allocation_cells"):
        use_rollups(con, "rollups", ["metadata.team"])
    assert not use_rollups(con, "usage_logs")
