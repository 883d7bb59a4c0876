"""Daily rollups: over a simulated month they give what the full scan gives, refreshing only the
(use_case, day) pairs that changed — new days and late rows ingested on a later night for an old
day — idempotently, and all or nothing when a refresh fails half way."""

from __future__ import annotations

import datetime as dt
import shutil
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tasks.core.settings import Settings, load_settings
from tasks.ingest.pipeline import ingest_paths
from tasks.nightly import inputs as night_inputs
from tasks.nightly import night as night_module
from tasks.nightly.rollup_set import ALL_SPECS
from tasks.simulation.demo_config import DEMO_CONFIG_DIR
from tasks.simulation.files import write_simulation
from tasks.simulation.spec import SimulationSpec
from tasks.warehouse import rollups
from tasks.warehouse.config_metrics import config_metrics, config_metrics_scan
from tasks.warehouse.connection import connect
from tasks.warehouse.rollup_specs import LATENCY_RELATIVE_BOUND, WAREHOUSE_SPECS
from tasks.warehouse.rollups import changed_pairs, refresh_rollups

pytestmark = pytest.mark.slow  # a simulated month ingested file by file

DAYS = 30
SPEC = SimulationSpec(days=DAYS, total_rows=DAYS * 1_200, include_cost=True)
LATE_DAY = 10  # day index whose late rows arrive on the last night
AS_OF = SPEC.start_date + dt.timedelta(days=DAYS - 1)
COUNTS = ("n", "successes", "quality_n", "days", "max_tokens")
SUMS = (
    "quality_sum",
    "quality_sum_squares",
    "cost_sum",
    "cost_sum_squares",
    "latency_mean",
    "tokens_sum",
    "temperature",
    "top_p",
)


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """29 nights ingested and rolled up (one file a night); the 30th night's file and a file of
    late rows for day 10 of one use case, not ingested yet."""
    home = tmp_path_factory.mktemp("rollups-home")
    built = load_settings(
        env={"LLMOPT_HOME": str(home), "LLMOPT_CONFIG_DIR": str(DEMO_CONFIG_DIR)}
    ).ensure_dirs()
    sim = write_simulation(SPEC, built.sim_dir, fmt="parquet")
    paths = sorted(str(p) for p in sim.paths)
    assert len(paths) == DAYS
    late_day = pq.read_table(paths[LATE_DAY])
    use_case = sorted(set(late_day.column("use_case").to_pylist()))[0]
    late = late_day.filter(pc.equal(late_day["use_case"], use_case)).slice(0, 150)
    late = late.set_column(
        late.schema.get_field_index("request_id"),
        "request_id",
        pa.array(["late-" + r for r in late.column("request_id").to_pylist()]),
    )
    late_path = home / "late.parquet"
    pq.write_table(late, late_path)
    con = connect(built)
    for night, path in enumerate(paths[:-1]):
        ingest_paths([path], con=con, validate=False)
        report = refresh_rollups(con, ALL_SPECS)
        assert report.ingests == 1, night
    con.close()
    return {
        "warehouse": built.warehouse_path,
        "last_night": paths[-1],
        "late": str(late_path),
        "late_pair": (use_case, SPEC.start_date + dt.timedelta(days=LATE_DAY)),
    }


@pytest.fixture
def con(settings: Settings, month: dict[str, Any]) -> Any:
    """This test's copy of the month's warehouse."""
    shutil.copyfile(month["warehouse"], settings.warehouse_path)
    con = connect(settings)
    yield con
    con.close()


def _last_night(con: duckdb.DuckDBPyConnection, month: dict[str, Any]) -> set[rollups.Pair]:
    """Ingest the 30th day and the late rows; the pairs they touch."""
    ingest_paths([month["last_night"], month["late"]], con=con, validate=False)
    tonight = {
        (str(r[0]), AS_OF)
        for r in con.execute(
            "SELECT DISTINCT use_case FROM usage_logs WHERE day = ?", [AS_OF]
        ).fetchall()
    }
    return tonight | {month["late_pair"]}


def _snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    names = [s.name for s in rollups.with_coverage(ALL_SPECS)]
    names += ["rollup_ingests", "rollup_tables", "rollup_stale"]
    return {
        name: con.execute(f"SELECT * FROM {name} ORDER BY ALL").df().reset_index(drop=True)
        for name in names
    }


def _assert_same_tables(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert a.keys() == b.keys()
    for name, frame in a.items():
        pd.testing.assert_frame_equal(frame, b[name], obj=name)


def _assert_metrics_equal(rolled: pd.DataFrame, scanned: pd.DataFrame) -> None:
    """Exact for counts and keys, float sums to summation order, p95 within the bound."""
    assert list(rolled.columns) == list(scanned.columns)
    assert rolled[["use_case", "config_key"]].equals(scanned[["use_case", "config_key"]])
    assert len(rolled) > 0
    for column in COUNTS:
        np.testing.assert_array_equal(
            rolled[column].to_numpy(float), scanned[column].to_numpy(float), err_msg=column
        )
    for column in SUMS:
        np.testing.assert_allclose(
            rolled[column].to_numpy(float), scanned[column].to_numpy(float), rtol=1e-9
        )
    for column in ("first_seen", "last_seen", "model", "prompt_id"):
        assert rolled[column].equals(scanned[column]), column
    p95, exact = rolled["latency_p95"].to_numpy(float), scanned["latency_p95"].to_numpy(float)
    assert np.all(np.abs(p95 - exact) <= LATENCY_RELATIVE_BOUND * exact + 1e-9)


def test_a_late_night_refreshes_only_the_changed_pairs_and_equals_the_full_scan(
    con: duckdb.DuckDBPyConnection, month: dict[str, Any]
) -> None:
    expected = _last_night(con, month)
    assert month["late_pair"][1] < AS_OF - dt.timedelta(days=15)  # an old day, really late
    assert set(changed_pairs(con, ALL_SPECS)) == expected

    report = refresh_rollups(con, ALL_SPECS)

    assert set(report.pairs) == expected
    assert report.ingests == 2 and report.rebuilt == ()
    assert {name: set(pairs) for name, pairs in report.touched.items()} == {
        spec.name: expected for spec in rollups.with_coverage(ALL_SPECS)
    }
    windows = [
        (None, AS_OF),
        (AS_OF - dt.timedelta(days=13), AS_OF),
        (month["late_pair"][1], month["late_pair"][1]),
        (SPEC.start_date, month["late_pair"][1]),
    ]
    for start, end in windows:
        _assert_metrics_equal(
            config_metrics(con, start=start, end=end, source="rollups"),
            config_metrics_scan(con, start=start, end=end),
        )
    use_case = month["late_pair"][0]
    _assert_metrics_equal(
        config_metrics(con, use_case=use_case, source="rollups"),
        config_metrics_scan(con, use_case=use_case),
    )


def test_night_inputs_from_rollups_equal_the_raw_scans(
    con: duckdb.DuckDBPyConnection, month: dict[str, Any]
) -> None:
    _last_night(con, month)
    refresh_rollups(con, ALL_SPECS)
    use_cases = [r[0] for r in con.execute("SELECT DISTINCT use_case FROM usage_logs").fetchall()]
    for day in (AS_OF, month["late_pair"][1]):
        got = night_inputs.night_metrics(con, use_cases, day)
        raw = con.execute(
            night_inputs.NIGHT_METRICS_SQL, {"day": day, "use_cases": use_cases}
        ).fetchall()
        assert len(raw) == len(use_cases)
        for row in raw:
            expected = dict(zip(night_inputs.NIGHT_METRIC_NAMES, row[1:], strict=True))
            p95 = expected.pop("latency_p95_ms")
            values = dict(got[row[0]])
            assert values.pop("latency_p95_ms") == pytest.approx(p95, rel=LATENCY_RELATIVE_BOUND)
            assert values == pytest.approx(expected, rel=1e-12)

    start = AS_OF - dt.timedelta(days=20)
    raw_boot = con.execute(
        night_inputs.BOOTSTRAP_SQL, {"use_cases": use_cases, "start": start, "end": AS_OF}
    ).fetchall()
    assert night_inputs.bootstrap_production(con, use_cases, start, AS_OF) == {
        str(r[0]): str(r[1]) for r in raw_boot
    }

    use_case = month["late_pair"][0]
    keys = config_metrics_scan(con, use_case=use_case).sort_values("n")["config_key"].tolist()
    pair = night_inputs.pair_stats(con, use_case, AS_OF, keys[-1], keys[0], nights=25)
    raw_pair = {
        r[0]: r
        for r in con.execute(
            night_inputs.PAIR_STATS_SQL,
            {
                "use_case": use_case,
                "day": AS_OF,
                "first": AS_OF - dt.timedelta(days=24),
                "a": keys[-1],
                "b": keys[0],
            },
        ).fetchall()
    }
    for i, key in enumerate((keys[-1], keys[0])):
        row = raw_pair[key]
        assert pair.errors.n[i] == row[1] and pair.errors.successes[i] == row[5]
        assert pair.quality.n[i] == row[2]
        assert pair.quality.sum[i] == pytest.approx(row[3], rel=1e-12)
        assert pair.latency.sum_squares[i] == pytest.approx(row[7], rel=1e-12)

    for rolled_sql, raw_sql in (
        (night_module.ROLLUP_ARM_CONFIG_SQL, night_module.ARM_CONFIG_SQL),
        (night_module.ROLLUP_EXPERIMENT_SHARE_SQL, night_module.EXPERIMENT_SHARE_SQL),
    ):
        rolled = con.execute(rolled_sql, {"as_of": AS_OF}).df()
        raw_frame = con.execute(raw_sql, {"as_of": AS_OF}).df()
        key = list(rolled.columns[:4] if "config_key" in rolled else rolled.columns[:2])
        rolled = rolled.sort_values(key).reset_index(drop=True)
        raw_frame = raw_frame.sort_values(key).reset_index(drop=True)
        assert len(rolled) > 0
        pd.testing.assert_frame_equal(rolled, raw_frame, check_dtype=False)


def test_a_second_refresh_touches_nothing(
    con: duckdb.DuckDBPyConnection, month: dict[str, Any]
) -> None:
    _last_night(con, month)
    refresh_rollups(con, ALL_SPECS)
    before = _snapshot(con)

    again = refresh_rollups(con, ALL_SPECS)

    assert again.nothing_to_do and again.pairs == () and again.ingests == 0
    assert changed_pairs(con, ALL_SPECS) == []
    _assert_same_tables(before, _snapshot(con))


def test_a_crash_mid_refresh_leaves_the_rollups_as_they_were(
    con: duckdb.DuckDBPyConnection, month: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _last_night(con, month)
    before = _snapshot(con)
    real = rollups._refresh_spec
    calls: list[str] = []

    def crash_on_the_third(con: Any, spec: rollups.RollupSpec, *args: Any, **kw: Any) -> int:
        calls.append(spec.name)
        if len(calls) == 3:
            raise RuntimeError("disk full, say")
        return real(con, spec, *args, **kw)

    monkeypatch.setattr(rollups, "_refresh_spec", crash_on_the_third)
    with pytest.raises(RuntimeError, match="disk full"):
        refresh_rollups(con, ALL_SPECS)
    assert len(calls) == 3  # two tables were already rewritten inside the transaction

    _assert_same_tables(before, _snapshot(con))
    monkeypatch.setattr(rollups, "_refresh_spec", real)
    assert set(refresh_rollups(con, ALL_SPECS).pairs) == expected
    _assert_metrics_equal(
        config_metrics(con, source="rollups"), config_metrics_scan(con, start=None, end=None)
    )


def test_rows_written_without_an_ingest_are_found_by_the_count_check(
    con: duckdb.DuckDBPyConnection, month: dict[str, Any]
) -> None:
    use_case, day = month["late_pair"]
    con.execute(
        "INSERT INTO usage_logs SELECT * REPLACE ('copy-' || request_id AS request_id) "
        "FROM usage_logs WHERE use_case = ? AND day = ? LIMIT 7",
        [use_case, day],
    )
    other = day + dt.timedelta(days=3)
    con.execute("DELETE FROM usage_logs WHERE day = ? AND use_case = ?", [other, use_case])

    report = refresh_rollups(con, ALL_SPECS)

    assert set(report.pairs) == {(use_case, day), (use_case, other)}
    assert report.ingests == 0
    _assert_metrics_equal(config_metrics(con, source="rollups"), config_metrics_scan(con))
    gone = con.execute(
        "SELECT count(*) FROM rollup_config_day WHERE use_case = ? AND day = ?", [use_case, other]
    ).fetchone()
    assert gone == (0,)


def test_an_in_place_update_needs_a_full_refresh(
    con: duckdb.DuckDBPyConnection, month: dict[str, Any]
) -> None:
    con.execute("UPDATE usage_logs SET quality = NULL WHERE day = ?", [month["late_pair"][1]])
    assert refresh_rollups(con, ALL_SPECS).nothing_to_do  # counts unchanged: not detected
    report = refresh_rollups(con, ALL_SPECS, full=True)
    assert set(report.rebuilt) == {s.name for s in rollups.with_coverage(ALL_SPECS)}
    _assert_metrics_equal(config_metrics(con, source="rollups"), config_metrics_scan(con))


def _daily_test_spec(
    name: str, column_sql: str, aggregate: str
) -> tuple[rollups.RollupSpec, str, str]:
    """A new rollup of one ``aggregate`` per use case and day; the raw query its rows must
    equal, and the query of its stored rows (both ordered)."""
    spec = rollups.RollupSpec(
        name=name,
        columns_sql=f"use_case VARCHAR, day DATE, {column_sql}",
        key=("use_case", "day"),
        select=lambda source: f"SELECT use_case, day, {aggregate} FROM {source} GROUP BY ALL",
    )
    raw = f"SELECT use_case, day, {aggregate} FROM usage_logs GROUP BY ALL ORDER BY ALL"
    return spec, raw, f"SELECT * FROM {name} ORDER BY ALL"


def test_a_new_spec_is_built_over_every_day_and_a_partial_refresh_leaves_no_gap(
    con: duckdb.DuckDBPyConnection, month: dict[str, Any]
) -> None:
    extra, raw, stored = _daily_test_spec(
        "rollup_test_tokens", "tokens HUGEINT", "sum(output_tokens)"
    )
    built = refresh_rollups(con, [*ALL_SPECS, extra])
    assert built.rebuilt == ("rollup_test_tokens",)
    assert built.pairs == ()  # the others had nothing to do
    assert con.execute(stored).fetchall() == con.execute(raw).fetchall()

    expected = _last_night(con, month)
    partial = refresh_rollups(con, WAREHOUSE_SPECS)  # what config_metrics(source="auto") does
    assert set(partial.pairs) == expected
    assert set(changed_pairs(con, [extra])) == expected  # still pending for the other tables

    caught_up = refresh_rollups(con, [*ALL_SPECS, extra])
    assert set(caught_up.touched["rollup_test_tokens"]) == expected
    assert caught_up.touched["rollup_config_day"] == ()
    assert con.execute(stored).fetchall() == con.execute(raw).fetchall()


def test_rows_computed_elsewhere_give_the_same_rollups(
    settings: Settings, con: duckdb.DuckDBPyConnection, month: dict[str, Any]
) -> None:
    expected = sorted(_last_night(con, month))
    con.execute("CHECKPOINT")
    twin_path = settings.home / "twin.duckdb"
    shutil.copyfile(settings.warehouse_path, twin_path)
    twin = connect(path=twin_path)
    try:
        refresh_rollups(twin, ALL_SPECS)
        local = _snapshot(twin)
    finally:
        twin.close()

    pairs = changed_pairs(con, ALL_SPECS)
    assert pairs == expected
    con.execute("CREATE TEMP TABLE worker_pairs (use_case VARCHAR, day DATE)")
    con.executemany("INSERT INTO worker_pairs VALUES (?, ?)", [list(p) for p in pairs])
    source = (
        "(SELECT u.* FROM usage_logs AS u SEMI JOIN worker_pairs AS p "
        "ON u.use_case = p.use_case AND u.day = p.day)"
    )
    rows = {
        spec.name: con.sql(spec.select(source)).to_arrow_table()
        for spec in rollups.with_coverage(ALL_SPECS)
    }
    report = refresh_rollups(con, ALL_SPECS, pairs=pairs, rows=rows)

    assert report.ingests == 2
    got = _snapshot(con)
    for name in local:
        if name in ("rollup_ingests", "rollup_tables"):  # timestamps differ
            continue
        pd.testing.assert_frame_equal(got[name], local[name], obj=name)
    with pytest.raises(ValueError, match="outside the refreshed pairs"):
        refresh_rollups(con, ALL_SPECS, pairs=pairs[:1], rows=rows)


def test_a_new_spec_refreshed_for_some_pairs_only_is_completed_later(
    con: duckdb.DuckDBPyConnection, month: dict[str, Any]
) -> None:
    extra, raw, stored = _daily_test_spec("rollup_test_calls", "calls BIGINT", "count(*)")
    some = [month["late_pair"]]
    partial = refresh_rollups(con, [extra], pairs=some)
    assert partial.rebuilt == () and partial.touched["rollup_test_calls"] == tuple(some)
    assert len(con.execute(stored).fetchall()) == 1

    completed = refresh_rollups(con, [extra])
    assert completed.rebuilt == ("rollup_test_calls",)
    assert con.execute(stored).fetchall() == con.execute(raw).fetchall()
