"""``llmopt ingest`` and ``llmopt status``: load usage logs, and see what the warehouse holds."""

from __future__ import annotations

import argparse
from typing import Any

from flows.cli_support import CommandError, add_json_flag, emit, guarded, to_jsonable


def _human_ingest(payload: dict[str, Any]) -> str:
    lines = []
    for f in payload["files"]:
        reasons = ", ".join(f"{k}={v}" for k, v in f["quarantine_by_reason"].items())
        lines.append(
            f"{f['status']:<8} {f['path']}  [{f['format']}/{f['shape']}]  read={f['lines_read']}"
            f" ingested={f['ingested']} duplicates={f['duplicates']}"
            f" quarantined={f['quarantined']}" + (f" ({reasons})" if reasons else "")
        )
        if f["error"]:
            lines.append(f"         error: {f['error']}")
    t = payload["totals"]
    lines.append(
        f"total: {t['files']} files ({t['failed_files']} failed), read={t['lines_read']}"
        f" ingested={t['ingested']} duplicates={t['duplicates']} quarantined={t['quarantined']}"
        f" in {t['seconds']} s"
    )
    validation = payload.get("validation")
    if validation:
        stats = validation["statistics"]
        lines.append(
            f"validation: {'passed' if validation['success'] else 'FAILED'}"
            f" ({stats['successful_expectations']}/{stats['evaluated_expectations']} expectations"
            f" on {validation['sample_rows']} sampled rows)"
        )
    return "\n".join(lines)


def _run_ingest(args: argparse.Namespace) -> int:
    from tasks.core.settings import load_settings
    from tasks.ingest.pipeline import IngestError, ingest_paths
    from tasks.ingest.pricing import PriceConfigError

    settings = load_settings()
    try:
        report = ingest_paths(
            args.paths,
            settings=settings,
            shape=args.format,
            validate=not args.no_validate,
        )
    except (IngestError, PriceConfigError) as exc:
        raise CommandError(str(exc)) from exc
    emit(report.to_dict(), as_json=args.json, human=_human_ingest)
    return 1 if report.failed else 0


def _human_status(payload: dict[str, Any]) -> str:
    lines = [
        f"warehouse: {payload['warehouse']}",
        f"rows: {payload['rows']}  days: {payload['days']}"
        f" ({payload['first_day']} .. {payload['last_day']})  files: {payload['files_ingested']}",
    ]
    for use_case, count in payload["use_cases"].items():
        lines.append(f"  {use_case}: {count}")
    quarantine = payload["quarantine_by_reason"]
    lines.append(
        "quarantine: "
        + (", ".join(f"{k}={v}" for k, v in quarantine.items()) if quarantine else "empty")
    )
    last = payload["last_ingest"]
    if last:
        lines.append(
            f"last ingest: {last['finished_at']} run {last['run_id']}: {last['files']} files,"
            f" ingested={last['ingested']} duplicates={last['duplicates']}"
            f" quarantined={last['quarantined']}"
        )
    return "\n".join(lines)


def _run_status(args: argparse.Namespace) -> int:
    from tasks.core.settings import load_settings
    from tasks.ingest.pipeline import warehouse_status
    from tasks.warehouse.connection import connect

    settings = load_settings()
    if not settings.warehouse_path.exists():
        raise CommandError(
            f"no warehouse at {settings.warehouse_path}: run `llmopt ingest PATH...` first"
        )
    con = connect(settings)
    try:
        status = warehouse_status(con)
    finally:
        con.close()
    payload = {"warehouse": str(settings.warehouse_path), **to_jsonable(status)}
    emit(payload, as_json=args.json, human=_human_status)
    return 0


def register(subparsers: Any) -> None:
    ingest = subparsers.add_parser(
        "ingest",
        help="load usage logs (JSONL / CSV / Parquet, .gz; LiteLLM; OTel spans) into the warehouse",
        description="Ingest files, globs or folders. Idempotent: a file already ingested is"
        " skipped; duplicate request_ids are counted, bad rows quarantined with a reason.",
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH_OR_GLOB")
    ingest.add_argument(
        "--format",
        choices=("auto", "canonical", "litellm", "otel"),
        default="auto",
        help="log shape (default: detected from keys / columns)",
    )
    ingest.add_argument(
        "--no-validate", action="store_true", help="skip the Great Expectations suite"
    )
    add_json_flag(ingest)
    ingest.set_defaults(handler=guarded(_run_ingest))

    status = subparsers.add_parser(
        "status", help="rows, days, use cases, quarantine counts and the last ingest"
    )
    add_json_flag(status)
    status.set_defaults(handler=guarded(_run_status))


__all__ = ["register"]
