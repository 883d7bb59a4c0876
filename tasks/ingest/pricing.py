"""The warehouse price table: genai-prices materialized per model, plus dated overrides.

Why a table: rows are priced in SQL by one join, never by one Python call per row. Why
genai-prices: it ships its data (works offline) and carries price history and tiers, so nobody
hand-maintains a price list. Overrides (a self-hosted model, a negotiated rate) live in
``data/price_overrides.csv`` with effective dates and win over genai-prices from that date.

Tiers: genai-prices uses a "cliff" model (crossing a tier re-prices *all* tokens of the request).
We keep the base price and the first tier (threshold on input tokens, e.g. 200k for
claude-sonnet-4-5); further tiers are rare and documented as not represented. Cache-read and
cache-write tokens (part of ``input_tokens``) are priced at their own rates when genai-prices has
them, else at the input rate; reasoning tokens are part of ``output_tokens`` (the output rate).
A ``provider/model`` name (as LiteLLM writes it) is resolved through genai-prices' provider
matching on the prefix.
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

    found = _find_model(data_snapshot.get_snapshot(), model, provider)
    if found is None:
        return []
    found_provider, info = found
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
        end = dated[index + 1][0] if index + 1 < len(dated) else None
        if end is not None and end <= start:
            continue
        item = _price_range(price)
        if item is not None:
            detail = f"genai-prices {info.id} ({found_provider.id})"
            ranges.append(
                {
                    **item,
                    "model": model,
                    "provider": found_provider.id,
                    "from": start,
                    "to": end,
                    "detail": detail,
                }
            )
    return ranges


def _find_model(snapshot: Any, model: str, provider: str | None) -> tuple[Any, Any] | None:
    """genai-prices' (provider, model info) for a logged name; ``provider/model`` resolves the
    prefix through genai-prices' provider matching."""
    attempts: list[tuple[str, str | None]] = [(model, provider)]
    if "/" in model:
        prefix, rest = model.split("/", 1)
        attempts.insert(0, (rest, prefix))
        attempts.append((rest, provider))
    if provider is not None:
        attempts.append((model, None))  # a provider name genai-prices does not know
    for ref, hint in attempts:
        try:
            return snapshot.find_provider_model(ref, None, hint, None)
        except LookupError:
            continue
    return None


def _price_range(price: Any) -> dict[str, Any] | None:
    """Base and first-tier prices (input, output, cache read / write) of one ModelPrice."""
    base_in, tier_at, tier_in = _split_tiers(price.input_mtok)
    base_out, tier_out_at, tier_out = _split_tiers(price.output_mtok)
    if base_in is None or base_out is None:
        return None
    cache_read, _, tier_cache_read = _split_tiers(getattr(price, "cache_read_mtok", None))
    cache_write, _, tier_cache_write = _split_tiers(getattr(price, "cache_write_mtok", None))
    tier_at = tier_at if tier_at is not None else tier_out_at
    tiered = tier_at is not None
    return {
        "input": base_in,
        "output": base_out,
        "tier_at": tier_at,
        "tier_input": (tier_in if tier_in is not None else base_in) if tiered else None,
        "tier_output": (tier_out if tier_out is not None else base_out) if tiered else None,
        "cache_read": cache_read,
        "cache_write": cache_write,
        "tier_cache_read": (tier_cache_read or cache_read) if tiered else None,
        "tier_cache_write": (tier_cache_write or cache_write) if tiered else None,
    }


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
                "INSERT INTO price_table BY NAME SELECT ? AS model, ? AS provider,"
                " ? AS input_usd_per_mtok, ? AS output_usd_per_mtok, ? AS tier_input_tokens,"
                " ? AS tier_input_usd_per_mtok, ? AS tier_output_usd_per_mtok,"
                " ? AS effective_from, ? AS effective_to, 'genai-prices' AS source,"
                " ? AS source_detail, ? AS loaded_at, ? AS cache_read_usd_per_mtok,"
                " ? AS cache_write_usd_per_mtok, ? AS tier_cache_read_usd_per_mtok,"
                " ? AS tier_cache_write_usd_per_mtok",
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
                    item["cache_read"],
                    item["cache_write"],
                    item["tier_cache_read"],
                    item["tier_cache_write"],
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


def cost_sql(
    alias: str,
    input_tokens: str,
    output_tokens: str,
    cache_read: str = "0",
    cache_write: str = "0",
) -> str:
    """USD cost of one row under price row ``alias`` (cliff tiers on input tokens).

    Args:
        alias: the joined price_table row.
        input_tokens: SQL for all input tokens (cached ones included).
        output_tokens: SQL for the output tokens (reasoning included).
        cache_read: SQL for the input tokens read from the cache (NULL counts as 0).
        cache_write: SQL for the input tokens written to the cache (NULL counts as 0).

    Returns:
        A SQL expression; cache rates fall back to the input rate when the table has none.
    """
    cr, cw = f"coalesce({cache_read}, 0)", f"coalesce({cache_write}, 0)"

    def priced(prefix: str) -> str:
        inp = f"{alias}.{prefix}input_usd_per_mtok"
        return (
            f"(({input_tokens} - {cr} - {cw}) * {inp}"
            f" + {cr} * coalesce({alias}.{prefix}cache_read_usd_per_mtok, {inp})"
            f" + {cw} * coalesce({alias}.{prefix}cache_write_usd_per_mtok, {inp})"
            f" + {output_tokens} * {alias}.{prefix}output_usd_per_mtok) / 1e6"
        )

    return (
        f"CASE WHEN {alias}.tier_input_tokens IS NOT NULL"
        f" AND {input_tokens} > {alias}.tier_input_tokens"
        f" THEN {priced('tier_')} ELSE {priced('')} END"
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
