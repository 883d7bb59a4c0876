"""The ``llmopt`` command line.

Each capability contributes its sub-commands from its own ``flows/*_commands.py`` module through a
``register(subparsers)`` function. Command modules import heavy libraries (prefect, duckdb, mlflow,
optuna) inside their handlers, so ``llmopt --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Order is the order shown in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "flows.ingest_commands",
    "flows.experiment_commands",
    "flows.simulate_commands",
    "flows.search_commands",
    "flows.allocation_commands",
    "flows.monitor_commands",
    "flows.registry_commands",
    "flows.nightly_commands",
    "flows.config_commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmopt",
        description="LLM Auto-Optimizer: ingest usage logs, analyse experiments, search, publish.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # capability not present in this build
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    result = handler(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
