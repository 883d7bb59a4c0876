"""``llmopt config check`` and ``llmopt init``: the user's own configuration, checked and started.

Configuration files resolve per file (``LLMOPT_CONFIG_DIR``, by default ``LLMOPT_HOME/config``,
then the shipped generic defaults in ``data/config``; see ``docs/configuration.md``).

* ``llmopt config check`` loads every file strictly (unknown or misplaced keys and wrong types
  are errors naming the file and line), runs each capability's own parser over it (value
  ranges, metric names), then prints which file each setting came from and the effective
  configuration per use case (the use cases in the warehouse and those the files name).
  Exit 1 when any file has a problem.
* ``llmopt init`` writes a commented starting configuration into the configuration folder for
  the use cases found in the warehouse; existing files are kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flows.cli_support import add_json_flag, emit, guarded
from tasks.core.config import CONFIG_NAMES, ConfigProblem, check_config, load_config
from tasks.core.config_view import (
    ObservedExperiment,
    ObservedUseCase,
    effective_for,
    named_use_cases,
    starter_files,
)
from tasks.core.errors import LlmoptError
from tasks.core.settings import Settings, load_settings

__all__ = ["register"]

_USE_CASES_SQL = """
SELECT use_case, count(*) AS requests, min(day) AS first_day, max(day) AS last_day,
       sum(cost_usd) FILTER (WHERE day > (SELECT max(day) FROM usage_logs) - 30) AS spend_30d,
       quantile_cont(latency_ms, 0.95) AS latency_p95,
       list(DISTINCT prompt_id ORDER BY prompt_id) FILTER (WHERE prompt_id IS NOT NULL) AS prompts,
       list(DISTINCT max_tokens ORDER BY max_tokens) FILTER (WHERE max_tokens IS NOT NULL) AS mts
FROM usage_logs GROUP BY use_case ORDER BY use_case
"""
_EXPERIMENTS_SQL = """
SELECT use_case, experiment_id, variant_id, count(*) AS n FROM usage_logs
WHERE experiment_id IS NOT NULL AND variant_id IS NOT NULL
GROUP BY ALL ORDER BY use_case, experiment_id, n DESC, variant_id
"""


def _observed(settings: Settings) -> list[ObservedUseCase] | None:
    """Use cases in the warehouse (None: no warehouse yet)."""
    # lazy: duckdb is only needed when a warehouse is there to read
    from tasks.warehouse.connection import open_existing

    if not Path(settings.warehouse_path).exists():
        return None
    con = open_existing(settings, read_only=True)
    try:
        rows = con.execute(_USE_CASES_SQL).fetchall()
        experiments: dict[str, dict[str, list[str]]] = {}
        for use_case, exp_id, variant, _ in con.execute(_EXPERIMENTS_SQL).fetchall():
            experiments.setdefault(use_case, {}).setdefault(exp_id, []).append(str(variant))
    finally:
        con.close()
    return [
        ObservedUseCase(
            name=str(name),
            requests=int(n),
            first_day=first,
            last_day=last,
            spend_30d_usd=None if spend is None else float(spend),
            latency_p95_ms=None if p95 is None else float(p95),
            prompt_ids=tuple(str(p) for p in prompts or ()),
            max_tokens=tuple(int(m) for m in mts or ()),
            experiments=tuple(
                ObservedExperiment(experiment_id=str(e), variants=tuple(v))
                for e, v in experiments.get(name, {}).items()
            ),
        )
        for name, n, first, last, spend, p95, prompts, mts in rows
    ]


def _capability_checks(
    settings: Settings, docs: Mapping[str, Any], use_cases: list[str]
) -> list[str]:
    """Each capability's own parser over its file: value problems the schema cannot see."""
    # lazy: these pull in optuna, duckdb and scipy; `llmopt --help` should not
    from strategies.objective import objective_from_config
    from tasks.experiments.spec import experiment_spec
    from tasks.monitoring.run import parse_monitoring_config
    from tasks.nightly.night import NightOptions
    from tasks.registry.policy import load_policies
    from tasks.search.space import search_config_from_mapping

    checks: list[tuple[str, Callable[[], object]]] = [
        ("monitoring.toml", lambda: parse_monitoring_config(docs["monitoring"])),
        ("search.toml", lambda: search_config_from_mapping(docs["search"])),
        ("registry.toml", lambda: load_policies(settings)),
        ("nightly.toml", lambda: NightOptions.from_parameters({}, settings)),
    ]
    experiments = docs["experiments"]
    for exp_id in [*experiments.get("experiments", {}), "<an unlisted experiment>"]:
        where = f"experiments.toml [{exp_id}]"
        checks.append((where, functools.partial(experiment_spec, exp_id, experiments)))
    objective = docs["nightly"].get("objective")
    for use_case in [None, *use_cases]:
        where = "nightly.toml [objective]" + (f" for {use_case}" if use_case else "")
        checks.append((where, functools.partial(objective_from_config, objective, use_case)))
    problems = []
    for where, check in checks:
        try:
            check()
        except (LlmoptError, ValueError, TypeError) as exc:
            problems.append(f"{where}: {exc}")
    return problems


def _registry_policies(settings: Settings, names: list[str]) -> dict[str, dict[str, Any]]:
    """The registry's own reading of its policies (it decides what a section inherits)."""
    # lazy: the registry package is only needed when a registry.toml was loaded
    from tasks.registry.policy import load_policies

    defaults, per_use_case = load_policies(settings)
    return {name: dataclasses.asdict(per_use_case.get(name, defaults)) for name in names}


def config_report(settings: Settings) -> dict[str, Any]:
    """Everything ``llmopt config check`` prints: files, problems, effective config per use case.

    Args:
        settings: resolved settings (the configuration folders and the warehouse).

    Returns:
        ``{"folders", "files", "problems", "use_cases", "ok"}``.
    """
    files: dict[str, str] = {}
    problems: list[ConfigProblem | str] = []
    docs: dict[str, Any] = {}
    for name in CONFIG_NAMES:
        path, found = check_config(name, settings)
        files[name] = str(path)
        problems += found
        if not found:
            docs[name] = load_config(name, settings)
    observed = _observed(settings) or []
    names = sorted({uc.name for uc in observed} | set(named_use_cases(docs)))
    if len(docs) == len(CONFIG_NAMES):
        problems += _capability_checks(settings, docs, names)
    in_warehouse = {uc.name: uc.requests for uc in observed}
    views = {name: effective_for(name, docs) for name in names}
    if "registry" in docs:
        try:
            for name, policy in _registry_policies(settings, names).items():
                views[name]["registry"] = policy
        except (LlmoptError, ValueError) as exc:
            problems.append(f"registry.toml: {exc}")
    return {
        "folders": [str(d) for d in settings.config_dirs()],
        "files": files,
        "problems": [str(p) for p in problems],
        "use_cases": {
            name: {"requests_in_warehouse": in_warehouse.get(name, 0), **views[name]}
            for name in names
        },
        "ok": not problems,
    }


def _kv(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "(none)"


def _human(report: Mapping[str, Any]) -> str:
    lines = ["Configuration folders (first match per file): " + " -> ".join(report["folders"])]
    lines += [f"  {name}.toml: {path}" for name, path in report["files"].items()]
    lines.append("")
    if report["problems"]:
        lines.append(f"{len(report['problems'])} problem(s):")
        lines += [f"  {p}" for p in report["problems"]]
    else:
        lines.append("Every file is valid.")
    for name, item in report["use_cases"].items():
        lines += ["", f"{name} ({item['requests_in_warehouse']:,} requests in the warehouse)"]
        for file, settings in item.items():
            if file == "requests_in_warehouse":
                continue
            if file in {"monitoring", "search", "nightly"}:
                for part, values in settings.items():
                    shown = _kv(values) if isinstance(values, Mapping) else values
                    lines.append(f"  {file}.{part}: {shown}")
            elif file == "experiments":
                for exp_id, spec in settings.items():
                    lines.append(f"  experiments.{exp_id}: {_kv(spec)}")
            else:
                lines.append(f"  {file}: {_kv(settings)}")
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> int:
    report = config_report(load_settings())
    emit(report, as_json=args.json, human=_human)
    return 0 if report["ok"] else 1


def _init(args: argparse.Namespace) -> int:
    settings = load_settings()
    target = Path(args.dir) if args.dir else settings.config_dir
    observed = _observed(settings)
    if args.use_case:
        observed = [
            next((uc for uc in observed or [] if uc.name == n), ObservedUseCase(name=n, requests=0))
            for n in args.use_case
        ]
    texts = starter_files(
        settings.default_config_dir, CONFIG_NAMES, observed or [], today=dt.date.today()
    )
    target.mkdir(parents=True, exist_ok=True)
    written, kept = [], []
    for name, text in texts.items():
        path = target / f"{name}.toml"
        if path.exists() and not args.force:
            kept.append(str(path))
            continue
        path.write_text(text, encoding="utf-8")
        written.append(str(path))
    result = {
        "folder": str(target),
        "use_cases": [uc.name for uc in observed or []],
        "warehouse": str(settings.warehouse_path) if observed is not None else None,
        "written": written,
        "kept": kept,
    }
    if target.resolve() != settings.config_dir.resolve():
        result["note"] = f"set LLMOPT_CONFIG_DIR={target} for the commands to read it"
    emit(result, as_json=args.json, human=_init_human)
    return 0


def _init_human(result: Mapping[str, Any]) -> str:
    if result["warehouse"] is None and not result["use_cases"]:
        found = "no warehouse yet: generic defaults only (ingest logs, then `llmopt init --force`)"
    else:
        found = "use cases: " + (", ".join(result["use_cases"]) or "none")
    lines = [f"Starting configuration in {result['folder']} ({found})"]
    lines += [f"  wrote {p}" for p in result["written"]]
    lines += [f"  kept  {p} (exists; --force overwrites)" for p in result["kept"]]
    if "note" in result:
        lines.append(result["note"])
    lines.append("Edit the commented per-use-case tables, then run `llmopt config check`.")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``config check`` and ``init`` to the ``llmopt`` parser.

    Args:
        subparsers: the top-level sub-command registry of :func:`flows.cli.build_parser`.
    """
    parser = subparsers.add_parser("config", help="check the configuration files")
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check", help="validate every file strictly; print the effective config per use case"
    )
    add_json_flag(check)
    check.set_defaults(handler=guarded(_check))

    init = subparsers.add_parser(
        "init", help="write a commented starting config for the use cases in the warehouse"
    )
    init.add_argument("--dir", help="folder to write (default: the configuration folder)")
    init.add_argument(
        "--use-case", action="append", help="write tables for this use case (repeatable)"
    )
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    add_json_flag(init)
    init.set_defaults(handler=guarded(_init))
