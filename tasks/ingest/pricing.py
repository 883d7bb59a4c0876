"""The warehouse price table: genai-prices materialized per model, plus dated overrides.

Why a table: rows are priced in SQL by one join, never by one Python call per row. Why
genai-prices: it ships its data (works offline) and carries price history and tiers, so nobody
hand-maintains a price list. Overrides (a self-hosted model, a negotiated rate) live in
``data/price_overrides.csv`` with effective dates and win over genai-prices from that date.

Tiers: genai-prices uses a "cliff" model (crossing a tier re-prices *all* tokens of the request).
We keep the base price and the first tier (threshold on input tokens, e.g. 200k for
claude-sonnet-4-5); further tiers are rare and documented as not represented. Cache-read /
cache-write token prices are not represented either: the canonical record has no cache counts.
Time-of-day prices (off-peak) are ignored: the always-valid price is used.

Example (offline)::

    con = duckdb.connect(); apply_ingest_schema(con)
    ensure_model_prices(con, ["gpt-4o-mini"])       # one genai-prices lookup
    con.sql("SELECT input_usd_per_mtok FROM price_table").fetchall()   # [(0.15,)]
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from tasks.core.errors import LlmoptError
from tasks.core.settings import REPO_ROOT, Settings

DEFAULT_OVERRIDES = REPO_ROOT / "data" / "price_overrides.csv"
INGEST_SCHEMA = REPO_ROOT / "data" / "ingest_schema.sql"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
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


@dataclass(frozen=True)
class PriceLookup:
    """Outcome of materializing one model: found in genai-prices (with how many ranges) or not."""

    model: str
    found: bool
    ranges: int
    detail: str


def apply_ingest_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ingestion tables if missing (idempotent; also listed in SCHEMA_FILES)."""
    con.execute(INGEST_SCHEMA.read_text(encoding="utf-8"))


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
        "INSERT INTO price_table VALUES (?, ?, ?, ?, NULL, NULL, NULL, ?, ?, 'override', ?, ?)",
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


def _split_tiers(value: Any) -> tuple[float | None, int | None, float | None]:
    """(base, first tier threshold, first tier price) of a genai-prices price value."""
    if value is None:
        return None, None, None
    if isinstance(value, Decimal | int | float):
        return float(value), None, None
    tiers = list(getattr(value, "tiers", []) or [])
    base = float(value.base)
    if not tiers:
        return base, None, None
    return base, int(tiers[0].start), float(tiers[0].price)


def genai_price_ranges(model: str, provider: str | None = None) -> list[dict[str, Any]]:
    """Price ranges of ``model`` from genai-prices' bundled data (empty if unknown).

    Conditional prices with a start date become consecutive [from, to) ranges; the first
    range starts at the epoch (genai-prices applies the first price before any start date).
    """
    from genai_prices import data_snapshot
    from genai_prices.types import ModelPrice, StartDateConstraint

    snapshot = data_snapshot.get_snapshot()
    try:
        found_provider, info = snapshot.find_provider_model(model, None, provider, None)
    except LookupError:
        if provider is None:
            return []
        try:  # a provider name genai-prices does not know: match on the model alone
            found_provider, info = snapshot.find_provider_model(model, None, None, None)
        except LookupError:
            return []
    dated: list[tuple[dt.datetime, ModelPrice]] = []
    if isinstance(info.prices, ModelPrice):
        dated.append((_EPOCH, info.prices))
    else:
        for index, conditional in enumerate(info.prices):
            constraint = conditional.constraint
            if constraint is None:
                dated.append((_EPOCH, conditional.prices))
            elif isinstance(constraint, StartDateConstraint):
                start = dt.datetime.combine(constraint.start_date, dt.time(), tzinfo=dt.UTC)
                dated.append((_EPOCH if index == 0 else start, conditional.prices))
            # time-of-day (off-peak) prices are not represented: see module docstring
    dated.sort(key=lambda item: item[0])
    ranges: list[dict[str, Any]] = []
    for index, (start, price) in enumerate(dated):
        base_in, tier_at, tier_in = _split_tiers(price.input_mtok)
        base_out, tier_out_at, tier_out = _split_tiers(price.output_mtok)
        if base_in is None or base_out is None:
            continue
        end = dated[index + 1][0] if index + 1 < len(dated) else None
        if end is not None and end <= start:
            continue
        ranges.append(
            {
                "model": model,
                "provider": found_provider.id,
                "input": base_in,
                "output": base_out,
                "tier_at": tier_at if tier_at is not None else tier_out_at,
                "tier_input": tier_in if tier_in is not None else base_in,
                "tier_output": tier_out if tier_out is not None else base_out,
                "from": start,
                "to": end,
                "detail": f"genai-prices {info.id} ({found_provider.id})",
            }
        )
    for item in ranges:
        if item["tier_at"] is None:
            item["tier_input"] = item["tier_output"] = None
    return ranges


def ensure_model_prices(
    con: duckdb.DuckDBPyConnection,
    models: Iterable[str],
    providers: dict[str, str] | None = None,
) -> list[PriceLookup]:
    """Materialize genai-prices rows for the models never looked up before (a handful of calls).

    ``providers`` optionally maps a model to the provider seen in the logs (a lookup hint).
    Models genai-prices does not know are remembered as not found, and rows using them without
    a logged cost are quarantined as ``unknown_model`` by the ingest: never priced at zero.
    """
    wanted = sorted({m for m in models if m})
    if not wanted:
        return []
    seen = {
        row[0]
        for row in con.execute(
            "SELECT model FROM price_lookups WHERE list_contains(?, model)", [wanted]
        ).fetchall()
    }
    now = dt.datetime.now(dt.UTC)
    results: list[PriceLookup] = []
    for model in wanted:
        if model in seen:
            continue
        ranges = genai_price_ranges(model, (providers or {}).get(model))
        for item in ranges:
            con.execute(
                "INSERT INTO price_table VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'genai-prices', ?, ?)",
                [
                    item["model"],
                    item["provider"],
                    item["input"],
                    item["output"],
                    item["tier_at"],
                    item["tier_input"],
                    item["tier_output"],
                    item["from"],
                    item["to"],
                    item["detail"],
                    now,
                ],
            )
        detail = ranges[0]["detail"] if ranges else "not in genai-prices"
        con.execute(
            "INSERT INTO price_lookups VALUES (?, ?, ?, ?)", [model, bool(ranges), detail, now]
        )
        results.append(
            PriceLookup(model=model, found=bool(ranges), ranges=len(ranges), detail=detail)
        )
    return results


def price_join_sql(alias: str, ts: str, model: str, source: str) -> str:
    """LEFT JOIN clause picking the ``source`` price valid at ``ts`` for ``model``."""
    return (
        f"LEFT JOIN price_table {alias} ON {alias}.source = '{source}' AND {alias}.model = {model}"
        f" AND {ts} >= {alias}.effective_from"
        f" AND ({alias}.effective_to IS NULL OR {ts} < {alias}.effective_to)"
    )


def cost_sql(alias: str, input_tokens: str, output_tokens: str) -> str:
    """USD cost of one row under price row ``alias`` (cliff tiers on input tokens)."""
    return (
        f"CASE WHEN {alias}.tier_input_tokens IS NOT NULL"
        f" AND {input_tokens} > {alias}.tier_input_tokens"
        f" THEN ({input_tokens} * {alias}.tier_input_usd_per_mtok"
        f" + {output_tokens} * {alias}.tier_output_usd_per_mtok) / 1e6"
        f" ELSE ({input_tokens} * {alias}.input_usd_per_mtok"
        f" + {output_tokens} * {alias}.output_usd_per_mtok) / 1e6 END"
    )


__all__ = [
    "DEFAULT_OVERRIDES",
    "PriceConfigError",
    "PriceLookup",
    "PriceOverride",
    "apply_ingest_schema",
    "cost_sql",
    "ensure_model_prices",
    "genai_price_ranges",
    "load_price_overrides",
    "overrides_path",
    "price_join_sql",
    "sync_price_overrides",
]
