"""What every benchmark script shares: arguments, clocks, peak memory, tables and the result file.

A benchmark is a script ``tests/benchmarks/bench_<name>.py`` (``make bench`` runs them all,
``make bench QUICK=--quick`` a smoke run). Each one measures our code beside a bare DuckDB / scipy
baseline in the same run and writes ``data/benchmarks/<name>.json`` with the date and the machine,
so the figures quoted in ``docs/benchmarks.md`` can be traced to a run.

Usage::

    from harness import Clock, bench_parser, markdown_table, peak_rss_mib, write_result

    args = bench_parser(__doc__).parse_args(argv)
    with Clock() as clock:
        ...
    print(markdown_table([{"what": "ours", "s": clock.seconds}]))
    write_result("name", {"rows": ...}, quick=args.quick)

    >>> markdown_table([{"a": 1, "b": 0.123456}])
    '| a | b |\\n|---|---|\\n| 1 | 0.1235 |'
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "data" / "benchmarks"

__all__ = [
    "Clock",
    "bench_parser",
    "machine",
    "markdown_table",
    "peak_rss_mib",
    "write_result",
]


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes.

    Args:
        doc: the script's module docstring; its first line becomes the description.

    Returns:
        A parser with ``--quick`` (a smoke run at small sizes) and ``--out DIR`` (where the JSON
        result goes, default ``data/benchmarks``); scripts add their own options to it.
    """
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else "")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="folder for the JSON result file"
    )
    return parser


class Clock:
    """Wall-clock seconds of a ``with`` block (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = float("nan")

    def __enter__(self) -> Clock:
        self.started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.seconds = time.perf_counter() - self.started


def peak_rss_mib(*, children: bool = False) -> float:
    """Peak resident set size of this process (or of its waited-for children), in MiB.

    Args:
        children: measure the children this process has waited for instead of itself; run each
            measured phase in its own child process to get a per-phase peak.
    """
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


def machine() -> dict[str, Any]:
    """What the figures were measured on: date, cores, Python, load average."""
    return {
        "date": dt.date.today().isoformat(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return (
            f"{value:.4g}" if abs(value) >= 1e4 or (value and abs(value) < 1e-3) else f"{value:.4f}"
        )
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows (dicts with the same keys) as a markdown table; floats to 4 decimals."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def write_result(
    name: str, payload: Mapping[str, Any], *, quick: bool, out: Path = RESULTS_DIR
) -> Path:
    """Write ``<out>/<name>.json`` (``<name>.quick.json`` for a smoke run) with the machine.

    Args:
        name: the benchmark's name (``bench_<name>.py``).
        payload: the measured figures (JSON-serialisable).
        quick: whether this was a ``--quick`` run (kept apart from full-size results).
        out: the folder to write into.

    Returns:
        The path written.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / (f"{name}.quick.json" if quick else f"{name}.json")
    document = {"benchmark": name, "quick": quick, "machine": machine(), **payload}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    return path
