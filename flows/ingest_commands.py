"""``llmopt ingest`` and ``llmopt status``: load usage logs, and see what the warehouse holds."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
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


def _use_case_rules(args: argparse.Namespace) -> Any:
    from tasks.ingest.sql_records import UseCaseRules

    if not args.use_case and not args.use_case_map:
        return None
    mapping: dict[str, Any] = {}
    if args.use_case_map:
        try:
            mapping = json.loads(Path(args.use_case_map).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"{args.use_case_map}: not a readable JSON object ({exc})") from exc
        if not isinstance(mapping, dict):
            raise CommandError(f"{args.use_case_map}: must be a JSON object")
    try:
        return UseCaseRules.from_mapping(mapping, default=args.use_case)
    except ValueError as exc:
        raise CommandError(f"{args.use_case_map or '--use-case'}: {exc}") from exc


def _progress(report: Any) -> None:
    """One line per file on stderr as soon as its transaction ends (not under --json)."""
    print(
        ("\r" if sys.stderr.isatty() else "")
        + f"{report.status:<8} {report.path}  read={report.lines_read} ingested={report.ingested}"
        f" duplicates={report.duplicates} quarantined={report.quarantined}",
        file=sys.stderr,
        flush=True,
    )


def _chunk_progress(path: str, lines: int) -> None:
    """A progress line for a large file, rewritten in place on a terminal (stderr)."""
    if sys.stderr.isatty():
        print(f"\r  {Path(path).name}: {lines:,} lines", end="", file=sys.stderr, flush=True)


def _run_ingest(args: argparse.Namespace) -> int:
    from tasks.core.settings import load_settings
    from tasks.ingest.source import ingest_source, is_database_url

    settings = load_settings()
    rules = _use_case_rules(args)
    options: dict[str, Any] = {"use_cases": rules, "validate": not args.no_validate}
    if len(args.paths) == 1 and is_database_url(args.paths[0]):
        source: Any = args.paths[0]
    else:
        source = args.paths
        options["shape"] = args.format
        if not args.json:
            options["on_file"] = _progress
            options["on_chunk"] = _chunk_progress
    report = ingest_source(settings, source, **options)
    emit(report.to_dict(), as_json=args.json, human=_human_ingest)
    return 1 if report.failed else 0


def _human_status(payload: dict[str, Any]) -> str:
    lines = [
        f"warehouse: {payload['warehouse']}"
        + (
            "  (snapshot: an ingest holds the file; figures as of its last checkpoint)"
            if payload.get("snapshot")
            else ""
        ),
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
    from tasks.ingest.report import read_status

    settings = load_settings()
    if not settings.warehouse_path.exists():
        raise CommandError(
            f"no warehouse at {settings.warehouse_path}: run `llmopt ingest PATH...` first"
        )
    status = read_status(Path(settings.warehouse_path))  # read-only: works during an ingest
    payload = {"warehouse": str(settings.warehouse_path), **to_jsonable(status)}
    emit(payload, as_json=args.json, human=_human_status)
    return 0


def register(subparsers: Any) -> None:
    ingest = subparsers.add_parser(
        "ingest",
        help="load usage logs (JSONL / CSV / Parquet, .gz; LiteLLM files or PostgreSQL; OTel"
        " spans) into the warehouse",
        description="Ingest files, globs or folders. Idempotent: a file already ingested is"
        " skipped; duplicate request_ids are counted, bad rows quarantined with a reason.",
    )
    ingest.add_argument(
        "paths",
        nargs="+",
        metavar="PATH_OR_GLOB_OR_URL",
        help="files, globs, folders, or a postgresql:// URL of a LiteLLM database",
    )
    ingest.add_argument(
        "--format",
        choices=("auto", "canonical", "litellm", "otel"),
        default="auto",
        help="log shape (default: detected from keys / columns)",
    )
    ingest.add_argument(
        "--no-validate", action="store_true", help="skip the Great Expectations suite"
    )
    ingest.add_argument(
        "--use-case",
        default=None,
        help="use case of records that name none (e.g. LiteLLM rows without tags)",
    )
    ingest.add_argument(
        "--use-case-map",
        default=None,
        metavar="JSON_FILE",
        help='{"model_group": {...}, "key_alias": {...}, "tag": {...}}: use case per value',
    )
    add_json_flag(ingest)
    ingest.set_defaults(handler=guarded(_run_ingest))

    status = subparsers.add_parser(
        "status", help="rows, days, use cases, quarantine counts and the last ingest"
    )
    add_json_flag(status)
    status.set_defaults(handler=guarded(_run_status))


__all__ = ["register"]
