"""The partitioned lake: usage logs as Parquet files by day and use case, read through DuckDB.

Why: one DuckDB file holds every raw row on the machine that holds the file. With a lake
location set (``LLMOPT_LAKE``: a local folder, or an fsspec URL such as ``memory://lake``), the
ingest moves each committed file's rows into Hive-style partitions::

    <lake>/usage_logs/day=YYYY-MM-DD/use_case=NAME/part-<ingest_id>.parquet

and the DuckDB file keeps what is small and transactional: the ingest manifest, the
quarantine, prices, the rollups, and ``lake_parts`` (one row per Parquet part). Every
connection opened by :func:`tasks.warehouse.connection.connect` gets a temporary view
``usage_logs`` over the rows still in the DuckDB table plus every registered part
(``read_parquet([...], hive_partitioning=true)``), so every existing reader works unchanged
and day filters prune partitions. Dask workers read the parts directly
(:mod:`tasks.warehouse.dask_rollups`).

Guarantees, as for the DuckDB table:

* **One commit per file.** The ingest inserts a file's rows into the DuckDB table inside the
  file's transaction (:func:`staging` hides the view meanwhile). :func:`commit_ingests`, called
  just before that transaction's COMMIT, drops rows whose request_id is already in the lake
  (counted as duplicates, the manifest corrected), writes the rest with one ``COPY ...
  PARTITION_BY`` into ``<lake>/_tmp/<ingest_id>/``, renames each file into its partition
  (atomic on one local file system), registers the parts in ``lake_parts`` and deletes the
  staged rows. The COMMIT then makes parts, manifest and counts visible together.
* **A crash between rename and COMMIT duplicates nothing.** Readers and the dedupe only see
  parts listed in ``lake_parts``, which rolls back with the manifest; the file is re-ingested
  under a new ingest id, and the next commit first removes every file of the lake that
  ``lake_parts`` does not list (the orphans, and ``_tmp`` leftovers).
* **Dedupe.** Within a file and against rows still in the DuckDB table: the ingest's own
  anti-join; against the lake: a semi-join on the request_id column of every part.

Locations: a local path (relative paths resolve against ``LLMOPT_HOME``), or any URL whose
protocol fsspec can open in this environment, registered with DuckDB through
``register_filesystem`` (checked: ``memory://``; s3fs, gcsfs and adlfs are not installed, and
DuckDB's httpfs extension cannot be downloaded offline). On object stores a rename is a copy
then a delete, so only the manifest-last guarantee holds there, not the atomic rename.

Size: one concept (the lake's write path, its view and its bookkeeping); a few helpers over
400 lines would scatter the commit protocol.

Example::

    settings = load_settings()            # LLMOPT_LAKE=/data/lake
    ingest_paths(["logs/*.jsonl"], settings=settings)
    con = connect(settings)               # usage_logs: a view over the lake
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb

from tasks.core.errors import LlmoptError
from tasks.core.settings import Settings

LAKE_SETTING = "LLMOPT_LAKE"
"""The settings key (environment or settings file) naming the lake location."""

TABLE_DIR = "usage_logs"
TMP_DIR = "_tmp"

PARTS_SQL = """
CREATE TABLE IF NOT EXISTS lake_parts (
    path       VARCHAR NOT NULL,   -- full location of one Parquet part
    ingest_id  VARCHAR NOT NULL,   -- one ingest whose rows the part holds (a row per ingest)
    use_case   VARCHAR NOT NULL,
    day        DATE NOT NULL,
    rows       BIGINT NOT NULL,    -- that ingest's rows in the part
    written_at TIMESTAMPTZ NOT NULL
)
"""

__all__ = [
    "LAKE_SETTING",
    "Lake",
    "LakeError",
    "attach",
    "commit_ingests",
    "flush",
    "lake_location",
    "part_paths",
    "refresh_view",
    "staged_rows",
    "staging",
]


class LakeError(LlmoptError):
    """The lake location cannot be used (unknown protocol, unreadable) or is inconsistent."""


class _Counts(Protocol):
    ingested: int
    duplicates: int


def lake_location(settings: Settings) -> str | None:
    """The configured lake location, or None (the DuckDB table holds the raw rows).

    Args:
        settings: resolved settings; ``LLMOPT_LAKE`` comes through ``settings.extra``.

    Returns:
        An absolute local path or a URL (``protocol://...``).
    """
    value = settings.extra.get(LAKE_SETTING, "").strip()
    if not value:
        return None
    if "://" in value and not value.startswith("file://"):
        return value.rstrip("/")
    path = Path(value.removeprefix("file://")).expanduser()
    return str(path if path.is_absolute() else (settings.home / path).resolve())


@dataclass(frozen=True)
class Lake:
    """A lake root: local (``fs`` None) or an fsspec file system DuckDB reads through.

    Attributes:
        root: the location as configured.
        fs: the fsspec file system for URLs, None for local paths.
    """

    root: str
    fs: Any = None

    @classmethod
    def open(cls, location: str) -> Lake:
        """Resolve a location; URLs need an fsspec implementation installed here.

        Args:
            location: a local path or ``protocol://...``.

        Raises:
            LakeError: the protocol has no installed implementation.
        """
        if "://" not in location:
            return cls(root=location.rstrip("/") or "/")
        try:
            import fsspec  # only for URLs; installed with dask and prefect

            fs = fsspec.filesystem(location.split("://", 1)[0])
        except (ImportError, ValueError) as exc:
            raise LakeError(f"lake {location}: no file system for this URL here ({exc})") from None
        return cls(root=location.rstrip("/"), fs=fs)

    def join(self, *parts: str) -> str:
        """``root/part/...``."""
        return "/".join((self.root, *parts))

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Make ``con`` able to read and write this lake's URLs (no-op for local paths)."""
        if self.fs is not None and self.fs.protocol[0] not in con.list_filesystems():
            with contextlib.suppress(duckdb.Error, ValueError):
                con.register_filesystem(self.fs)

    def files(self, under: str) -> list[str]:
        """Every file below ``under`` (full locations), sorted."""
        if self.fs is None:
            base = Path(under)
            return sorted(str(p) for p in base.rglob("*") if p.is_file()) if base.exists() else []
        if not self.fs.exists(under):
            return []
        return sorted(self._url(p) for p in self.fs.find(under))

    def move(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` (atomic on one local file system)."""
        if self.fs is None:
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        else:
            self.fs.mv(src, dst)

    def remove(self, location: str) -> None:
        """Delete a file or folder; missing is fine."""
        if self.fs is None:
            path = Path(location)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        elif self.fs.exists(location):
            self.fs.rm(location, recursive=True)

    def _url(self, path: str) -> str:
        protocol = self.root.split("://", 1)[0]
        return path if "://" in path else f"{protocol}://{path.lstrip('/')}"


def _catalog(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("SELECT current_database()").fetchone()
    return str(row[0]) if row else "main"


def _table(con: duckdb.DuckDBPyConnection) -> str:
    """The DuckDB table, qualified past the temporary view of the same name."""
    return f'"{_catalog(con)}".main.usage_logs'


def staged_rows(con: duckdb.DuckDBPyConnection) -> int:
    """Raw rows still in the DuckDB table (not in the lake).

    Args:
        con: a warehouse connection.
    """
    row = con.execute(f"SELECT count(*) FROM {_table(con)}").fetchone()
    return int(row[0]) if row else 0


def _has_parts_table(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'lake_parts' "
        "AND database_name = current_database() AND NOT temporary"
    ).fetchone()
    return bool(row and row[0])


def part_paths(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every registered part (committed), sorted; empty without a lake.

    Args:
        con: a warehouse connection.
    """
    if not _has_parts_table(con):
        return []
    rows = con.execute("SELECT DISTINCT path FROM lake_parts ORDER BY 1").fetchall()
    return [str(r[0]) for r in rows]


def _columns(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return [
        (str(name), str(kind))
        for name, kind in con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'usage_logs'"
            " AND database_name = current_database() AND schema_name = 'main'"
            " ORDER BY column_index"
        ).fetchall()
    ]


def _parts_relation(con: duckdb.DuckDBPyConnection, paths: Sequence[str]) -> str:
    """A SELECT over ``paths`` with the table's columns and types (missing columns NULL)."""
    files = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    cols = ", ".join(f'CAST("{name}" AS {kind}) AS "{name}"' for name, kind in _columns(con))
    return (
        f"SELECT {cols} FROM read_parquet([{files}], hive_partitioning = true,"
        " union_by_name = true)"
    )


def refresh_view(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create the temporary view ``usage_logs``: the DuckDB table plus every part.

    Without registered parts the view is dropped and ``usage_logs`` is the table again.
    Called on connect and after each lake commit; a connection opened before another
    process's ingest sees that ingest after calling this.

    Args:
        con: a warehouse connection (read-only is fine).
    """
    paths = part_paths(con)
    if not paths:
        con.execute("DROP VIEW IF EXISTS temp.main.usage_logs")
        return
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW usage_logs AS SELECT * FROM {_table(con)}"
        f" UNION ALL BY NAME {_parts_relation(con, paths)}"
    )


def attach(con: duckdb.DuckDBPyConnection, settings: Settings | None, *, writable: bool) -> None:
    """Set up lake mode on a fresh connection (called by ``connect``).

    Creates ``lake_parts`` (writable connections), remembers the configured location for
    :func:`commit_ingests` in a temporary table, and creates the ``usage_logs`` view when
    parts exist (whatever the settings say: the warehouse file knows its parts).

    Args:
        con: the new connection.
        settings: resolved settings (None: no lake configured).
        writable: whether ``con`` may create tables.
    """
    location = lake_location(settings) if settings is not None else None
    if writable and (location is not None or _has_parts_table(con)):
        con.execute(PARTS_SQL)
    for path in part_paths(con)[:1]:
        if "://" in path:
            Lake.open(path.split("://", 1)[0] + "://").register(con)
    if location is not None:
        Lake.open(location).register(con)
        con.execute("CREATE OR REPLACE TEMP TABLE _lake_location AS SELECT ? AS root", [location])
    refresh_view(con)


def _configured(con: duckdb.DuckDBPyConnection) -> Lake | None:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = '_lake_location' AND temporary"
    ).fetchone()
    if not row or not row[0]:
        return None
    root = con.execute("SELECT root FROM _lake_location").fetchone()
    return Lake.open(str(root[0])) if root else None


@contextlib.contextmanager
def staging(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """During an ingest, ``usage_logs`` names the DuckDB table (the staging area).

    The view is dropped on entry (an INSERT cannot target a view) and recreated on exit,
    now including the parts this ingest committed.

    Args:
        con: the ingest's connection.
    """
    con.execute("DROP VIEW IF EXISTS temp.main.usage_logs")
    try:
        yield
    finally:
        with contextlib.suppress(duckdb.Error):  # a closed connection keeps nothing
            refresh_view(con)


def _drop_lake_duplicates(
    con: duckdb.DuckDBPyConnection, ids: Sequence[str], parts: Sequence[str]
) -> dict[str, int]:
    """Delete staged rows whose request_id is already in the lake; per ingest id, how many."""
    if not parts:
        return {}
    files = ", ".join("'" + p.replace("'", "''") + "'" for p in parts)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _lake_dups AS SELECT s.ingest_id, s.request_id"
        f" FROM {_table(con)} AS s WHERE list_contains($ids, s.ingest_id)"
        f" AND s.request_id IN (SELECT request_id FROM read_parquet([{files}]))",
        {"ids": list(ids)},
    )
    found = {
        str(i): int(n)
        for i, n in con.execute("SELECT ingest_id, count(*) FROM _lake_dups GROUP BY 1").fetchall()
    }
    if found:
        con.execute(
            f"DELETE FROM {_table(con)} AS s USING _lake_dups AS d"
            " WHERE s.ingest_id = d.ingest_id AND s.request_id = d.request_id"
        )
    con.execute("DROP TABLE _lake_dups")
    return found


def _remove_orphans(con: duckdb.DuckDBPyConnection, lake: Lake) -> int:
    """Delete every lake file ``lake_parts`` does not list (crash leftovers); how many."""
    known = set(part_paths(con))
    orphans = [f for f in lake.files(lake.join(TABLE_DIR)) if f not in known]
    for path in orphans:
        lake.remove(path)
    lake.remove(lake.join(TMP_DIR))
    return len(orphans)


def _write_parts(
    con: duckdb.DuckDBPyConnection, lake: Lake, ids: Sequence[str], token: str
) -> list[tuple[str, str, str, dt.date, int]]:
    """Staged rows of ``ids`` -> renamed parts; (path, ingest id, use_case, day, rows)."""
    tmp = lake.join(TMP_DIR, token)
    if lake.fs is None:
        Path(tmp).parent.mkdir(parents=True, exist_ok=True)
    con.execute(
        f"COPY (SELECT * FROM {_table(con)} WHERE list_contains($ids, ingest_id)) TO '{tmp}'"
        " (FORMAT parquet, PARTITION_BY (day, use_case), WRITE_PARTITION_COLUMNS true,"
        " OVERWRITE_OR_IGNORE true)",
        {"ids": list(ids)},
    )
    written = con.execute(
        "SELECT filename, ingest_id, any_value(use_case), any_value(day), count(*)"
        f" FROM read_parquet('{tmp}/*/*/*.parquet', hive_partitioning = false, filename = true)"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    parts: list[tuple[str, str, str, dt.date, int]] = []
    finals: dict[str, str] = {}
    for name, ingest_id, use_case, day, rows in written:
        if name not in finals:
            relative = str(name)[str(name).rindex("/day=") + 1 :].split("/")  # day=, use_case=
            stem = relative[-1].removesuffix(".parquet")
            suffix = "" if stem == "data_0" else f"-{stem}"  # DuckDB split a large partition
            finals[name] = lake.join(
                TABLE_DIR, relative[0], relative[1], f"part-{token}{suffix}.parquet"
            )
            lake.move(str(name), finals[name])
        parts.append((finals[name], str(ingest_id), str(use_case), day, int(rows)))
    lake.remove(tmp)
    return parts


def _move_to_lake(
    con: duckdb.DuckDBPyConnection, lake: Lake, ids: Sequence[str], token: str
) -> int:
    """Write, register and un-stage the rows of ``ids``; rows moved."""
    con.execute(PARTS_SQL)
    parts = _write_parts(con, lake, ids, token)
    if parts:
        con.executemany(
            "INSERT INTO lake_parts VALUES (?, ?, ?, ?, ?, now())", [list(p) for p in parts]
        )
    con.execute(
        f"DELETE FROM {_table(con)} WHERE list_contains($ids, ingest_id)", {"ids": list(ids)}
    )
    return sum(p[4] for p in parts)


def commit_ingests(con: duckdb.DuckDBPyConnection, counts: Mapping[str, _Counts]) -> int:
    """The ingest's commit step in lake mode: staged rows of these ingests -> lake parts.

    Runs inside the ingest's transaction, after the manifest rows and before COMMIT; without
    a configured lake it does nothing. Rows whose request_id a committed part already holds
    are dropped and moved from ``ingested`` to ``duplicates`` (in ``counts`` and in the
    manifest).

    Args:
        con: the ingest's connection, inside its transaction.
        counts: per ingest id, its running counts (``ingested`` / ``duplicates``, updated).

    Returns:
        Rows written to the lake.
    """
    lake = _configured(con)
    ids = sorted(i for i, c in counts.items() if c.ingested)
    if lake is None or not ids:
        return 0
    con.execute(PARTS_SQL)
    _remove_orphans(con, lake)
    for ingest_id, n in _drop_lake_duplicates(con, ids, part_paths(con)).items():
        counts[ingest_id].ingested -= n
        counts[ingest_id].duplicates += n
        con.execute(
            "UPDATE ingest_manifest SET ingested = ingested - ?, duplicates = duplicates + ?"
            " WHERE ingest_id = ?",
            [n, n, ingest_id],
        )
    return _move_to_lake(con, lake, ids, ids[0])


def flush(con: duckdb.DuckDBPyConnection) -> int:
    """Move every row still in the DuckDB table into the configured lake, in one transaction.

    For a warehouse that existed before the lake was configured, or rows a LiteLLM pull
    staged; afterwards every raw row is in Parquet (what the Dask path needs).

    Args:
        con: a writable connection opened with the lake configured.

    Returns:
        Rows moved.

    Raises:
        LakeError: no lake configured on this connection.
    """
    lake = _configured(con)
    if lake is None:
        raise LakeError(f"no lake configured: set {LAKE_SETTING} to a folder or URL")
    with staging(con):
        ids = [
            str(r[0])
            for r in con.execute(
                f"SELECT DISTINCT ingest_id FROM {_table(con)} ORDER BY 1"
            ).fetchall()
        ]
        if not ids:
            return 0
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(PARTS_SQL)
            _remove_orphans(con, lake)
            moved = _move_to_lake(con, lake, ids, f"flush-{uuid.uuid4().hex[:12]}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return moved
