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

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import duckdb

from tasks.core.settings import REPO_ROOT
from tasks.ingest.price_overrides import (
    DEFAULT_OVERRIDES,
    PriceConfigError,
    PriceOverride,
    load_price_overrides,
    overrides_path,
    sync_price_overrides,
)

INGEST_SCHEMA = REPO_ROOT / "data" / "ingest_schema.sql"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


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
