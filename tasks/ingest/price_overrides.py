"""Price overrides: dated prices (self-hosted models, negotiated rates) that win over genai-prices.

``data/price_overrides.csv`` (or ``LLMOPT_PRICE_OVERRIDES``) lists USD per million tokens per
model, valid on [effective_from, effective_to); dates without a zone are UTC. Overlapping ranges
for one model are refused.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import duckdb

from tasks.core.errors import LlmoptError
from tasks.core.settings import REPO_ROOT, Settings

__all__ = [
    "DEFAULT_OVERRIDES",
    "OVERRIDE_COLUMNS",
    "PriceConfigError",
    "PriceOverride",
    "load_price_overrides",
    "overrides_path",
    "sync_price_overrides",
]

DEFAULT_OVERRIDES = REPO_ROOT / "data" / "price_overrides.csv"
OVERRIDE_COLUMNS = (
    "model",
    "provider",
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "effective_from",
    "effective_to",
    "note",
)


class PriceConfigError(LlmoptError, ValueError):
    """The overrides file is unusable; the message names the file and line."""


@dataclass(frozen=True)
class PriceOverride:
    """One negotiated / self-hosted price valid on [effective_from, effective_to)."""

    model: str
    provider: str | None
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    effective_from: dt.datetime
    effective_to: dt.datetime | None
    note: str


def overrides_path(settings: Settings | None) -> Path:
    """``LLMOPT_PRICE_OVERRIDES`` if set, else ``data/price_overrides.csv`` of the repository."""
    if settings is not None and settings.extra.get("LLMOPT_PRICE_OVERRIDES"):
        return Path(settings.extra["LLMOPT_PRICE_OVERRIDES"])
    return DEFAULT_OVERRIDES


def _parse_when(text: str, where: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise PriceConfigError(f"{where}: bad date {text!r} (use ISO 8601)") from exc
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _parse_price(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise PriceConfigError(f"{where}: bad price {text!r}") from exc
    if not math.isfinite(value) or value < 0:
        raise PriceConfigError(f"{where}: price must be finite and >= 0, got {text!r}")
    return value


def load_price_overrides(path: Path) -> list[PriceOverride]:
    """Read the overrides CSV (dates without a zone are UTC); reject overlapping ranges."""
    if not path.is_file():
        return []
    overrides: list[PriceOverride] = []
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(line for line in handle if not line.lstrip().startswith("#"))
        missing = set(OVERRIDE_COLUMNS) - set(rows.fieldnames or ())
        if missing:
            raise PriceConfigError(f"{path}: missing columns {sorted(missing)}")
        for number, row in enumerate(rows, start=2):
            where = f"{path}:{number}"
            if not (row.get("model") or "").strip():
                raise PriceConfigError(f"{where}: empty model")
            start = _parse_when(row["effective_from"], where)
            end = _parse_when(row["effective_to"], where) if row["effective_to"] else None
            if end is not None and end <= start:
                raise PriceConfigError(f"{where}: effective_to must be after effective_from")
            overrides.append(
                PriceOverride(
                    model=row["model"].strip(),
                    provider=(row.get("provider") or "").strip() or None,
                    input_usd_per_mtok=_parse_price(row["input_usd_per_mtok"], where),
                    output_usd_per_mtok=_parse_price(row["output_usd_per_mtok"], where),
                    effective_from=start,
                    effective_to=end,
                    note=(row.get("note") or "").strip(),
                )
            )
    by_model: dict[str, list[PriceOverride]] = {}
    for item in overrides:
        by_model.setdefault(item.model, []).append(item)
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    for model, items in by_model.items():
        items.sort(key=lambda o: o.effective_from)
        for left, right in itertools.pairwise(items):
            if (left.effective_to or far) > right.effective_from:
                raise PriceConfigError(f"{path}: overlapping override ranges for {model!r}")
    return overrides


def sync_price_overrides(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Replace the override rows of the price table with the file's content; return the count."""
    overrides = load_price_overrides(path)
    now = dt.datetime.now(dt.UTC)
    con.execute("DELETE FROM price_table WHERE source = 'override'")
    if not overrides:
        return 0
    con.executemany(
        "INSERT INTO price_table (model, provider, input_usd_per_mtok, output_usd_per_mtok,"
        " tier_input_tokens, tier_input_usd_per_mtok, tier_output_usd_per_mtok, effective_from,"
        " effective_to, source, source_detail, loaded_at)"
        " VALUES (?, ?, ?, ?, NULL, NULL, NULL, ?, ?, 'override', ?, ?)",
        [
            [
                o.model,
                o.provider,
                o.input_usd_per_mtok,
                o.output_usd_per_mtok,
                o.effective_from,
                o.effective_to,
                o.note,
                now,
            ]
            for o in overrides
        ],
    )
    return len(overrides)
