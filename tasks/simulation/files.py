"""Writing simulated rows as Parquet / JSONL / CSV (optionally compressed) with
``ground_truth.json`` beside them, and loading them straight into a warehouse for tests.

Part of the simulator (a tool for the demo, tests and benchmarks; never imported by production
code).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tasks.simulation.generate import _check_days, iter_simulation
from tasks.simulation.spec import (
    CANONICAL_SCHEMA,
    FORMATS,
    GROUND_TRUTH_FILE,
    Format,
    SimulationSpec,
)
from tasks.simulation.truth import ground_truth

# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationOutput:
    """What :func:`write_simulation` wrote."""

    out_dir: Path
    paths: tuple[Path, ...]
    ground_truth_path: Path
    rows: int
    fmt: str
    compress: bool
    seconds: float
    rows_per_day: tuple[int, ...]  # one entry per written day, in day order


_PARQUET_DICTIONARY_COLUMNS = [
    f.name for f in CANONICAL_SCHEMA if pa.types.is_string(f.type) and f.name != "request_id"
]
_PARQUET_STATISTICS_COLUMNS = ["timestamp", "use_case", "model", "config_id", "experiment_id"]
_OUR_FILES = re.compile(
    r"^usage-(?P<day>\d{4}-\d{2}-\d{2})(-part\d+)?\.(parquet|jsonl|csv)(\.gz)?$"
)


def _text_table(table: pa.Table) -> pa.Table:
    """Timestamp as ISO 8601 UTC with 'Z' and microseconds (``2026-10-01T00:00:51.603997Z``)."""
    iso = pc.strftime(table["timestamp"], format="%Y-%m-%dT%H:%M:%SZ")
    return table.set_column(table.schema.get_field_index("timestamp"), "timestamp", iso)


def _write_one(table: pa.Table, path: Path, fmt: str, compress: bool) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        # Without the stored Arrow schema readers see plain strings, not dictionaries. Dictionary
        # pages only where values repeat, statistics only on the columns queries filter on: this
        # halves the write time.
        pq.write_table(
            table,
            path,
            compression="zstd" if compress else "snappy",
            store_schema=False,
            use_dictionary=_PARQUET_DICTIONARY_COLUMNS,
            write_statistics=_PARQUET_STATISTICS_COLUMNS,
        )
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        text = _text_table(table)
        if compress:
            with pa.CompressedOutputStream(str(path), "gzip") as sink:
                pacsv.write_csv(text, sink)
        else:
            pacsv.write_csv(text, str(path))
    elif fmt == "jsonl":
        import duckdb

        text = _text_table(table)
        cols = ", ".join(
            "metadata::JSON AS metadata" if c == "metadata" else f'"{c}"' for c in text.column_names
        )
        options = "FORMAT json" + (", COMPRESSION gzip" if compress else "")
        con = duckdb.connect(":memory:")
        try:
            con.register("sim_rows", text)
            con.execute(f"COPY (SELECT {cols} FROM sim_rows) TO '{path}' ({options})")
        finally:
            con.close()
    else:  # pragma: no cover - checked by the caller
        raise ValueError(fmt)


def write_simulation(
    spec: SimulationSpec,
    out_dir: str | Path,
    fmt: Format | str = "parquet",
    compress: bool = False,
    rows_per_file: int | None = None,
    *,
    days: Sequence[int] | None = None,
) -> SimulationOutput:
    """Write one file per day (split into parts of at most ``rows_per_file`` rows) and
    ``ground_truth.json`` (always for the whole spec). Same spec -> identical bytes.

    Without ``days``, earlier simulator files in ``out_dir`` are removed first, so the folder
    holds exactly one simulation. With ``days`` (day indexes), only those days are (re)written
    and other days' files are kept: a nightly demo appends one day at a time.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if rows_per_file is not None and rows_per_file < 1:
        raise ValueError("rows_per_file must be >= 1")
    day_indexes = _check_days(spec, days)
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    replaced = {spec.day(d).isoformat() for d in day_indexes}
    for old in out.iterdir():
        match = _OUR_FILES.match(old.name)
        if match and (days is None or match.group("day") in replaced):
            old.unlink()
    suffix = f".{fmt}" + (".gz" if compress and fmt != "parquet" else "")
    paths: list[Path] = []
    per_day: list[int] = []
    total = 0
    for day, table in iter_simulation(spec, decode=fmt != "parquet", days=day_indexes):
        per_day.append(table.num_rows)
        total += table.num_rows
        if table.num_rows == 0:
            continue
        size = rows_per_file or table.num_rows
        parts = range(0, table.num_rows, size)
        for i, start in enumerate(parts):
            name = f"usage-{day.isoformat()}" + (f"-part{i:03d}" if len(parts) > 1 else "")
            path = out / f"{name}{suffix}"
            _write_one(table.slice(start, size), path, fmt, compress)
            paths.append(path)
    truth = ground_truth(spec)
    gt_path = out / GROUND_TRUTH_FILE
    gt_path.write_text(json.dumps(truth.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    return SimulationOutput(
        out_dir=out,
        paths=tuple(paths),
        ground_truth_path=gt_path,
        rows=total,
        fmt=fmt,
        compress=compress,
        seconds=time.perf_counter() - started,
        rows_per_day=tuple(per_day),
    )


LOAD_SIMULATED_SQL = """
INSERT INTO usage_logs BY NAME
SELECT * EXCLUDE ("timestamp", metadata, cost_usd),
       "timestamp" AS ts,
       CAST(timezone('UTC', "timestamp") AS DATE) AS day,
       coalesce(cost_usd, 0.0) AS cost_usd,
       'log' AS cost_source,
       CAST(metadata AS JSON) AS metadata,
       $label AS source_file,
       row_number() OVER () AS source_line,
       $label AS ingest_id
FROM simulated_rows
"""


def load_simulated(con: Any, table: pa.Table, *, label: str = "simulated") -> int:
    """Insert simulated canonical rows straight into ``usage_logs`` (tests and benchmarks).

    A shortcut past ingestion for rows the simulator made itself (already canonical, unique
    ids): ``timestamp`` becomes ``ts`` and ``day``; a missing cost becomes 0 (pass a spec with
    ``include_cost=True`` when costs matter). Real logs go through :mod:`tasks.ingest.pipeline`.
    """
    con.register("simulated_rows", table)
    try:
        con.execute(LOAD_SIMULATED_SQL, {"label": label})
    finally:
        con.unregister("simulated_rows")
    return int(table.num_rows)
