"""Raw aggregation on Dask: each worker rolls up its lake partitions, the flow only merges.

Why: in lake mode (:mod:`tasks.warehouse.lake`) the raw rows are Parquet parts by day and use
case, and every rollup row of a (use_case, day) pair depends only on that pair's raw rows
(:class:`tasks.warehouse.rollups.RollupSpec`). So the night's heavy part fans out by
partition: one Dask task per changed pair opens its own in-memory DuckDB, runs
``spec.select("(SELECT * FROM read_parquet([<the pair's parts>], hive_partitioning = true))")``
for every spec and returns Arrow tables. The flow process concatenates them (disjoint pairs:
concatenation is the exact merge) and hands them to
:func:`tasks.warehouse.rollups.refresh_rollups` (``rows=``), which replaces the pairs' rows
in one transaction.

The flow process never reads raw rows here: which pairs changed, and the coverage check, are
computed from ``lake_parts`` (one row per part and ingest with its row count) without touching
the Parquet files: counts are sums of the parts' counts, and the pairs' other reads see the
parts expanded to one row per raw row (:data:`PARTS_SOURCE`). Rows still staged
in the DuckDB table (a warehouse from before the lake, or a LiteLLM pull) are refused with a
clear message: :func:`tasks.warehouse.lake.flush` moves them into the lake first.

Where the cluster comes from (:func:`dask_client`): a ``distributed.Client`` passed in, else
an address (``LLMOPT_DASK_ADDRESS`` or the argument: ``tcp://scheduler:8786``), else the Dask
cluster the current task runs on (the nightly flow on prefect-dask's ``DaskTaskRunner``:
``worker_client``). The workers must read the lake's paths: a shared folder or an object
store (a ``memory://`` lake lives in one process and does not work here).

Example::

    with distributed.Client("tcp://scheduler:8786") as client:
        report = refresh_rollups_on_dask(con, ALL_SPECS, client=client)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from tasks.core.settings import Settings
from tasks.warehouse.lake import LakeError, part_paths, staged_rows
from tasks.warehouse.rollups import (
    COUNTED,
    Pair,
    RefreshReport,
    RollupSpec,
    changed_pairs,
    refresh_rollups,
    with_coverage,
)

DASK_SETTING = "LLMOPT_DASK_ADDRESS"
"""The settings key naming the Dask scheduler the rollups fan out to."""

PARTS_SOURCE = "(SELECT p.use_case, p.day, p.ingest_id FROM lake_parts AS p, range(p.rows) AS r(i))"
"""One row per raw row, from the parts' counts: what ``changed_pairs`` needs, no Parquet read."""
COUNTED[PARTS_SOURCE] = "(SELECT use_case, day, ingest_id, rows AS n FROM lake_parts)"

__all__ = [
    "DASK_SETTING",
    "PARTS_SOURCE",
    "InProcess",
    "batches",
    "dask_client",
    "partition_files",
    "refresh_night_rollups",
    "refresh_rollups_on_dask",
    "rollup_partition",
]


def partition_files(con: duckdb.DuckDBPyConnection, pairs: Iterable[Pair]) -> dict[Pair, list[str]]:
    """The committed Parquet parts of each pair (pairs without parts are left out).

    Args:
        con: a warehouse connection in lake mode.
        pairs: (use_case, day) pairs.

    Returns:
        Per pair, its part paths, sorted.
    """
    wanted = sorted(set(pairs))
    if not wanted or not part_paths(con):
        return {}
    rows = con.execute(
        "SELECT DISTINCT use_case, day, path FROM lake_parts"
        " WHERE list_contains($pairs, {'use_case': use_case, 'day': day}) ORDER BY ALL",
        {"pairs": [{"use_case": uc, "day": day} for uc, day in wanted]},
    ).fetchall()
    out: dict[Pair, list[str]] = {}
    for use_case, day, path in rows:
        out.setdefault((str(use_case), day), []).append(str(path))
    return out


def _pair_rows(con: duckdb.DuckDBPyConnection, files: Mapping[Pair, Any]) -> dict[Pair, int]:
    rows = con.execute(
        "SELECT use_case, day, sum(rows) FROM lake_parts"
        " WHERE list_contains($pairs, {'use_case': use_case, 'day': day}) GROUP BY ALL",
        {"pairs": [{"use_case": uc, "day": day} for uc, day in files]},
    ).fetchall()
    return {(str(uc), day): int(n) for uc, day, n in rows}


def batches(
    files: Mapping[Pair, Sequence[str]], rows: Mapping[Pair, int], slots: int
) -> list[list[str]]:
    """Pack pairs into at most ``slots`` tasks of about equal rows (largest first).

    A task's files may span several pairs: each spec groups by its key, so the rows stay
    per pair and tasks still produce disjoint rollup rows.

    Args:
        files: per pair, its part paths.
        rows: per pair, its raw row count.
        slots: the most tasks wanted (e.g. worker threads x 2).

    Returns:
        The file lists, one per task, none empty.

    Example:
        >>> import datetime as dt
        >>> d = dt.date(2026, 11, 1)
        >>> batches({("a", d): ["a1"], ("b", d): ["b1"], ("c", d): ["c1"]},
        ...         {("a", d): 10, ("b", d): 6, ("c", d): 5}, 2)
        [['a1'], ['b1', 'c1']]
    """
    bins: list[tuple[int, list[str]]] = [(0, []) for _ in range(max(1, min(slots, len(files))))]
    for pair in sorted(files, key=lambda p: (-rows.get(p, 0), p)):
        load, paths = min(bins, key=lambda b: b[0])
        bins[bins.index((load, paths))] = (load + rows.get(pair, 0), [*paths, *files[pair]])
    return [paths for _, paths in bins if paths]


def rollup_partition(
    files: Sequence[str], specs: Sequence[RollupSpec], threads: int | None = 1
) -> dict[str, pa.Table]:
    """A worker's job: every spec's rows over some partitions' Parquet parts.

    Args:
        files: the partitions' part paths (readable from the worker).
        specs: the specs to compute.
        threads: DuckDB threads in this worker (None: DuckDB's default, every core).

    Returns:
        Per spec table name, its rows as an Arrow table in table column order.
    """
    con = duckdb.connect()
    try:
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        source = (
            f"(SELECT * FROM read_parquet([{listed}], hive_partitioning = true,"
            " union_by_name = true))"
        )
        return {spec.name: con.sql(spec.select(source)).to_arrow_table() for spec in specs}
    finally:
        con.close()


@contextlib.contextmanager
def dask_client(
    settings: Settings | None = None, *, address: str | None = None, client: Any = None
) -> Iterator[Any]:
    """The Dask client to fan out on, or None when no cluster is configured.

    Args:
        settings: resolved settings (``LLMOPT_DASK_ADDRESS``).
        address: a scheduler address instead of the setting.
        client: an open ``distributed.Client`` (used as is, left open).

    Yields:
        A client, or None (refresh in this process).
    """
    if client is not None:
        yield client
        return
    address = address or (settings.extra.get(DASK_SETTING, "") if settings else "") or None
    if not address and "distributed" not in sys.modules:  # not on a cluster: no import cost
        yield None
        return
    import distributed  # only when a cluster is used

    if address:
        with distributed.Client(address) as opened:
            yield opened
        return
    try:
        distributed.get_worker()  # inside a task on a Dask cluster (prefect-dask)
    except ValueError:
        yield None
        return
    with distributed.worker_client() as inner:
        yield inner


def _concat(results: Sequence[Mapping[str, pa.Table]], name: str) -> pa.Table | None:
    tables = [r[name] for r in results if r[name].num_rows]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


# size: the fan-out's steps in order (check staging, pairs, map, gather, merge, refresh)
def refresh_rollups_on_dask(
    con: duckdb.DuckDBPyConnection,
    specs: Sequence[RollupSpec],
    *,
    client: Any,
    pairs: Iterable[Pair] | None = None,
    threads: int | None = 1,
    tasks_per_thread: int = 2,
) -> RefreshReport:
    """Refresh rollups with the raw aggregation on a Dask cluster, partitions in tasks.

    Args:
        con: a writable warehouse connection in lake mode (the flow's process).
        specs: the specs to refresh (the coverage spec is added).
        client: a ``distributed.Client``.
        pairs: the pairs to refresh; default: every changed pair (every pair when a spec is
            new or redefined), computed from ``lake_parts``.
        threads: DuckDB threads per task (1 suits one Dask thread per core).
        tasks_per_thread: tasks per Dask worker thread; the changed pairs are packed into
            that many tasks of about equal rows (a task's statements cost a few ms each, so
            one task per small pair would be mostly overhead).

    Returns:
        The refresh report of :func:`refresh_rollups`.

    Raises:
        LakeError: rows still staged in the DuckDB table (run ``flush`` first) or no lake.
    """
    if not part_paths(con):
        raise LakeError("no lake parts in this warehouse: the Dask rollups read a lake")
    staged = staged_rows(con)
    if staged:
        raise LakeError(
            f"{staged} raw rows are in the DuckDB table, not in the lake: "
            "move them with tasks.warehouse.lake.flush before a Dask refresh"
        )
    all_specs = with_coverage(specs)
    todo = (
        sorted(set(pairs))
        if pairs is not None
        else changed_pairs(con, all_specs, source=PARTS_SOURCE)
    )
    files = partition_files(con, todo)
    slots = max(1, sum(client.nthreads().values()) * tasks_per_thread)
    work = batches(files, _pair_rows(con, files), slots)
    futures = client.map(rollup_partition, work, specs=all_specs, threads=threads, pure=False)
    results = client.gather(futures)
    rows: dict[str, pa.Table] = {}
    for spec in all_specs:
        merged = _concat(results, spec.name)
        rows[spec.name] = merged if merged is not None else _empty(con, spec)
    return refresh_rollups(con, specs, pairs=todo, rows=rows, source=PARTS_SOURCE)


def _empty(con: duckdb.DuckDBPyConnection, spec: RollupSpec) -> pa.Table:
    """No rows for a spec (no pair had parts): an empty table with the spec's columns."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _dask_empty ({spec.columns_sql})")
    try:
        return con.sql("SELECT * FROM _dask_empty").to_arrow_table()
    finally:
        con.execute("DROP TABLE _dask_empty")


def refresh_night_rollups(
    con: duckdb.DuckDBPyConnection,
    specs: Sequence[RollupSpec],
    settings: Settings | None = None,
    *,
    client: Any = None,
) -> RefreshReport:
    """The nightly refresh: by partition when every raw row is in the lake, on Dask when set.

    In lake mode the changed partitions are rolled up from their Parquet parts (on the Dask
    cluster, or in this process without one) and the change check reads ``lake_parts`` only.
    Without a lake, or with rows still in the DuckDB table, the plain :func:`refresh_rollups`
    over ``usage_logs``.

    Args:
        con: a writable warehouse connection.
        specs: the specs to refresh.
        settings: resolved settings (``LLMOPT_DASK_ADDRESS``).
        client: an open ``distributed.Client`` instead of the setting.

    Returns:
        The refresh report.
    """
    if not part_paths(con) or staged_rows(con):  # raw rows outside the lake
        return refresh_rollups(con, specs)
    with dask_client(settings, client=client) as dask:
        if dask is not None:
            return refresh_rollups_on_dask(con, specs, client=dask)
    # no cluster: the same partition reads in this process, so the night reads only the
    # changed partitions' files and its count check stays on lake_parts
    return refresh_rollups_on_dask(con, specs, client=InProcess(), threads=None)


class InProcess:
    """A stand-in for a Dask client that runs each task here, one after another."""

    def nthreads(self) -> dict[str, int]:
        """One slot: one task for all the changed pairs."""
        return {"local": 1}

    def map(self, fn: Any, work: Sequence[Any], **kwargs: Any) -> list[Any]:
        """Call ``fn`` on every item now (``pure`` is ignored)."""
        kwargs.pop("pure", None)
        return [fn(item, **kwargs) for item in work]

    def gather(self, results: list[Any]) -> list[Any]:
        """The results, already computed."""
        return results
