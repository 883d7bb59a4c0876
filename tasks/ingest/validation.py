"""Great Expectations on every ingest: the suite is data, the results are warehouse rows.

Why a sample: the row-level rules that decide quarantine are SQL (tasks/ingest/sql_classify.py)
and see every row. Great Expectations watches the batch that passed them (nulls, ranges, sets,
uniqueness) on a bounded reservoir sample (default 100,000 rows, seeded) pulled from DuckDB as
pandas, so memory stays bounded whatever the batch size. GX's SQL engine on DuckDB is broken
in this stack (ENVIRONMENT.md), hence pandas. GX is imported lazily: its import alone takes ~7 s.

Example::

    summary = validate_ingest_run(con, run_id)   # also stored in validation_results
    summary["success"], summary["statistics"]["evaluated_expectations"]
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from tasks.core.settings import REPO_ROOT

SUITE_PATH = REPO_ROOT / "data" / "expectations" / "usage_logs.json"
DEFAULT_SAMPLE_ROWS = 100_000


def load_suite_definition(path: Path = SUITE_PATH) -> dict[str, Any]:
    """The expectation suite as a plain dict (``name``, ``expectations``, ``meta``)."""
    with path.open(encoding="utf-8") as handle:
        definition: dict[str, Any] = json.load(handle)
    if not isinstance(definition.get("expectations"), list) or not definition.get("name"):
        raise ValueError(f"{path}: an expectation suite needs 'name' and 'expectations'")
    return definition


def validate_frame(frame: Any, suite_definition: dict[str, Any]) -> dict[str, Any]:
    """Validate a pandas DataFrame against the suite; a compact JSON-serialisable summary."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite

    context = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
    except Exception:  # progress bars are cosmetic
        pass
    suite = ExpectationSuite(**suite_definition)
    source = context.data_sources.add_pandas("warehouse")
    asset = source.add_dataframe_asset(suite_definition["name"])
    batch = asset.add_batch_definition_whole_dataframe("sample").get_batch(
        batch_parameters={"dataframe": frame}
    )
    result = batch.validate(suite).to_json_dict()
    expectations = []
    for item in result.get("results", []):
        config = item.get("expectation_config", {})
        kwargs = {k: v for k, v in config.get("kwargs", {}).items() if k != "batch_id"}
        outcome = item.get("result", {})
        expectations.append(
            {
                "type": config.get("type"),
                "column": kwargs.get("column"),
                "kwargs": kwargs,
                "success": bool(item.get("success")),
                "element_count": outcome.get("element_count"),
                "unexpected_count": outcome.get("unexpected_count"),
                "unexpected_percent": outcome.get("unexpected_percent"),
                "exception": (item.get("exception_info") or {}).get("exception_message"),
            }
        )
    statistics = result.get("statistics", {})
    return {
        "suite_name": suite_definition["name"],
        "success": bool(result.get("success")),
        "statistics": {
            "evaluated_expectations": int(statistics.get("evaluated_expectations", 0)),
            "successful_expectations": int(statistics.get("successful_expectations", 0)),
            "unsuccessful_expectations": int(statistics.get("unsuccessful_expectations", 0)),
        },
        "expectations": expectations,
    }


def validate_ingest_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int = 7,
    suite_path: Path = SUITE_PATH,
    ingest_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Validate a seeded sample of the rows inserted by ``run_id``; store and return the result.

    Args:
        con: the warehouse (inside the ingest's transaction when called before its COMMIT).
        run_id: the ingest run.
        sample_rows: the reservoir size.
        seed: the sample's seed.
        suite_path: the expectation suite (JSON).
        ingest_ids: only these files' rows (one transaction of the run); default every row
            of the run.

    Returns:
        The summary (also stored in ``validation_results``).
    """
    definition = load_suite_definition(suite_path)
    params: list[Any]
    if ingest_ids is None:
        where, params = "starts_with(ingest_id, ?)", [run_id + "-"]
    else:
        where, params = "list_contains(?, ingest_id)", [list(ingest_ids)]
    total = int(
        con.execute(f"SELECT count(*) FROM usage_logs WHERE {where}", params).fetchone()[0]  # type: ignore[index]
    )
    frame = con.execute(
        f"SELECT * EXCLUDE (metadata) FROM (SELECT * FROM usage_logs WHERE {where})"
        f" USING SAMPLE reservoir({int(sample_rows)} ROWS) REPEATABLE ({int(seed)})",
        params,
    ).df()
    summary = validate_frame(frame, definition)
    summary.update({"run_id": run_id, "sample_rows": len(frame), "total_rows": total})
    stats = summary["statistics"]
    con.execute(
        "INSERT INTO validation_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            definition["name"],
            dt.datetime.now(dt.UTC),
            summary["success"],
            stats["evaluated_expectations"],
            stats["successful_expectations"],
            len(frame),
            total,
            json.dumps(summary),
        ],
    )
    return summary


def latest_validation_results(
    con: duckdb.DuckDBPyConnection, run_id: str | None = None
) -> dict[str, Any] | None:
    """The stored summary of ``run_id`` (default: the latest run), as a dict for MLflow."""
    query = "SELECT results FROM validation_results"
    params: list[Any] = []
    if run_id is not None:
        query += " WHERE run_id = ?"
        params.append(run_id)
    row = con.execute(query + " ORDER BY validated_at DESC LIMIT 1", params).fetchone()
    if row is None:
        return None
    value = json.loads(row[0])
    return value if isinstance(value, dict) else None


def merge_validations(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One summary of several transactions' validation results (None when there are none)."""
    if not results:
        return None
    if len(results) == 1:
        return results[0]
    merged = dict(results[-1])
    merged["success"] = all(r["success"] for r in results)
    merged["statistics"] = {
        key: sum(int(r["statistics"][key]) for r in results) for key in results[0]["statistics"]
    }
    merged["sample_rows"] = sum(int(r["sample_rows"]) for r in results)
    merged["total_rows"] = sum(int(r["total_rows"]) for r in results)
    merged["transactions"] = len(results)
    return merged


__all__ = [
    "DEFAULT_SAMPLE_ROWS",
    "SUITE_PATH",
    "latest_validation_results",
    "load_suite_definition",
    "merge_validations",
    "validate_frame",
    "validate_ingest_run",
]
