"""SQL that types, checks, prices and routes extracted records (``_rec`` -> ``_cls``).

Every record gets typed values, a reason code (NULL when it passes every rule) with a detail,
and its cost: the logged one, else the override price, else genai-prices' (priced with cached
tokens at their own rate). Rules, in order: malformed input, missing field, no use case, bad
type, non-finite, missing timezone, negative tokens, out of range, future timestamp, unknown
model. Then :func:`candidates_sql` (valid, first occurrence, not stored yet) and
:func:`quarantine_sql` (the rest, each line once).
"""

from __future__ import annotations

import datetime as dt
import re

from tasks.ingest.log_formats import (
    CANONICAL_FIELDS,
    Shape,
    epoch_seconds_sql,
    error_type_sql,
    status_sql,
)
from tasks.ingest.pricing import cost_sql, price_join_sql

__all__ = [
    "FUTURE_TOLERANCE",
    "MAX_LATENCY_MS",
    "MAX_TOKENS_PER_CALL",
    "REASON_CODES",
    "USAGE_COLUMNS",
    "candidates_sql",
    "classify_sql",
    "priced_sql",
    "quarantine_sql",
    "timestamp_sql",
]

MAX_TOKENS_PER_CALL = 10_000_000  # above this a token count is "absurd": out_of_range
MAX_LATENCY_MS = 86_400_000.0  # one day
FUTURE_TOLERANCE = dt.timedelta(minutes=5)  # clock skew allowed before future_timestamp
REASON_CODES = (
    "invalid_utf8",
    "malformed_json",
    "malformed_row",
    "not_genai_span",
    "missing_field",
    "no_use_case",
    "bad_type",
    "non_finite",
    "missing_timezone",
    "negative_tokens",
    "out_of_range",
    "future_timestamp",
    "unknown_model",
)
USAGE_COLUMNS = (
    "request_id, ts, day, use_case, model, provider, prompt_id, config_id, experiment_id,"
    " variant_id, unit_id, propensity, temperature, top_p, max_tokens, input_tokens,"
    " output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, latency_ms,"
    " ttft_ms, cost_usd, cost_source, status, error_type, quality, feedback, task_type,"
    " user_segment, region, language, metadata, source_file, source_line, ingest_id"
)
NO_USE_CASE = "no metadata.use_case, tag, use-case mapping or --use-case default applies"
# a request_id readable from a line that is not valid JSON (kept on its quarantine row)
_LOOSE_ID = r'"request_id"\s*:\s*"([^"\\]{1,200})"'
_PART = re.compile(r"CASE WHEN (.*) THEN '\w+' END", re.DOTALL)  # a listed rule's test
_TOKENS: tuple[str, ...] = ("input_tokens", "output_tokens", "cache_read_tokens")
_TOKENS += ("cache_write_tokens", "reasoning_tokens")
_OFFSET = "[+-][0-9]{2}(:?[0-9]{2})?"  # a UTC offset: +02, +0200, +02:00


def timestamp_sql(ts_mode: str, assume_utc: bool) -> tuple[str, str, list[str]]:
    """(timestamp expression, 'zone missing' flag, helper columns) over ``x_timestamp``.

    Args:
        ts_mode: ``text`` (ISO 8601 or epoch s/ms/us/ns), ``tz`` or ``naive`` (typed columns).
        assume_utc: the producer writes naive UTC (LiteLLM): no missing_timezone.

    Returns:
        The two expressions, and the helper columns they read (computed one projection
        earlier, so each pattern runs once per record).
    """
    if ts_mode == "tz":
        return "x_timestamp", "false", []
    if ts_mode == "naive":
        if assume_utc:
            return "timezone('UTC', x_timestamp)", "false", []
        return "NULL::TIMESTAMPTZ", "x_timestamp IS NOT NULL", []
    t = "trim(CAST(x_timestamp AS VARCHAR))"
    helpers = [
        f"{t} AS t_text",
        f"regexp_full_match({t}, '-?[0-9]+(\\.[0-9]+)?') AS t_numeric",
        f"regexp_full_match({t}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[T ][0-9:.]+"
        f"\\s*(Z|z|UTC|GMT|{_OFFSET})(\\s+[A-Za-z]{{2,5}})?') AS t_zoned",
    ]
    number = "TRY_CAST(t_text AS DOUBLE)"
    epoch = f"to_timestamp({epoch_seconds_sql(number)})"
    naive_value = "timezone('UTC', TRY_CAST(t_text AS TIMESTAMP))" if assume_utc else "NULL"
    # DuckDB reads no space before an offset and no zone name after one (Ruby's and git's
    # `10:00:00 +0200`, Go's `10:00:00 +0200 CEST`): tried on the rows the plain cast refuses
    spaced = f"regexp_replace(t_text, '\\s+({_OFFSET}|Z|z)(\\s+[A-Za-z]{{2,5}})?$', '\\1')"
    zoned = f"coalesce(TRY_CAST(t_text AS TIMESTAMPTZ), TRY_CAST({spaced} AS TIMESTAMPTZ))"
    expr = (
        f"CASE WHEN x_timestamp IS NULL THEN NULL WHEN t_numeric THEN {epoch}"
        f" WHEN t_zoned THEN {zoned} ELSE {naive_value} END"
    )
    flag = (
        "false"
        if assume_utc
        else (
            "(x_timestamp IS NOT NULL AND NOT t_numeric AND NOT t_zoned"
            " AND TRY_CAST(t_text AS TIMESTAMP) IS NOT NULL)"
        )
    )
    return expr, flag, helpers


def _typed_values(
    shape: Shape, ts_mode: str, use_case: str
) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(``s_*`` sources, typed values, rule conditions per kind) for every canonical field."""
    exprs = {**shape.exprs, "use_case": use_case}
    sources: list[str] = []
    values: list[str] = []
    rules: dict[str, list[str]] = {"missing": [], "bad": [], "non_finite": []}
    ts_expr, ts_naive, helpers = timestamp_sql(ts_mode, shape.naive_timestamps_are_utc)
    sources += helpers
    for name, kind, required in CANONICAL_FIELDS:
        if name == "timestamp":
            values.append(f"{ts_expr} AS ts, {ts_naive} AS ts_naive")
            continue
        default = f"x_{name}" if name in shape.sources else "NULL::VARCHAR"
        sources.append(f"{exprs.get(name, default)} AS s_{name}")
        s = f"s_{name}"
        if name == "status":
            values.append(f"{status_sql(s)} AS status")
        elif name == "error_type":
            values.append(f"{error_type_sql('s_status', s)} AS error_type")
        elif kind == "str":
            values.append(f"CAST({s} AS VARCHAR) AS {name}")
        elif kind == "double":
            values.append(f"TRY_CAST({s} AS DOUBLE) AS {name}")
            rules["bad"].append(f"CASE WHEN {s} IS NOT NULL AND {name} IS NULL THEN '{name}' END")
            rules["non_finite"].append(f"CASE WHEN NOT isfinite({name}) THEN '{name}' END")
        else:  # int: must be integral
            values.append(f"TRY_CAST({s} AS DOUBLE) AS d_{name}")
            rules["bad"].append(
                f"CASE WHEN {s} IS NOT NULL AND (d_{name} IS NULL OR (isfinite(d_{name})"
                f" AND d_{name} <> trunc(d_{name}))) THEN '{name}' END"
            )
            rules["non_finite"].append(f"CASE WHEN NOT isfinite(d_{name}) THEN '{name}' END")
        if required and name not in ("use_case", "request_id"):
            rules["missing"].append(f"CASE WHEN {s} IS NULL THEN '{name}' END")
    rules["missing"] = [
        "CASE WHEN s_request_id IS NULL OR trim(CAST(s_request_id AS VARCHAR)) = ''"
        " THEN 'request_id' END",
        "CASE WHEN x_timestamp IS NULL THEN 'timestamp' END",
        *rules["missing"],
    ]
    rules["bad"].append(
        # an object or array is not an id (valid JSON that opens with { or [; no second parse)
        "CASE WHEN regexp_matches(CAST(s_request_id AS VARCHAR), '^\\s*[\\[{]')"
        " AND json_valid(CAST(s_request_id AS VARCHAR)) THEN 'request_id' END"
    )
    rules["bad"].append(
        "CASE WHEN x_timestamp IS NOT NULL AND ts IS NULL AND NOT ts_naive THEN 'timestamp' END"
    )
    return sources, values, rules


def _ranges() -> dict[str, str]:
    limit = MAX_TOKENS_PER_CALL
    return {
        "input_tokens": f"d_input_tokens > {limit}",
        "output_tokens": f"d_output_tokens > {limit}",
        "cache_read_tokens": "coalesce(d_cache_read_tokens, 0) + coalesce(d_cache_write_tokens, 0)"
        " > d_input_tokens",
        "reasoning_tokens": "d_reasoning_tokens > d_output_tokens",
        "max_tokens": f"(d_max_tokens <= 0 OR d_max_tokens > {limit})",
        "latency_ms": f"(latency_ms < 0 OR latency_ms > {MAX_LATENCY_MS})",
        "ttft_ms": f"(ttft_ms < 0 OR ttft_ms > {MAX_LATENCY_MS})",
        "cost_usd": "cost_usd < 0",
        "quality": "(quality < 0 OR quality > 1)",
        "feedback": "d_feedback NOT IN (-1, 0, 1)",
        "propensity": "(propensity <= 0 OR propensity > 1)",
        "temperature": "(temperature < 0 OR temperature > 2)",
        "top_p": "(top_p < 0 OR top_p > 1)",
        "status": "status NOT IN ('success', 'error')",
        "timestamp": "ts < TIMESTAMPTZ '2000-01-01 00:00:00+00'",
    }


def _rule_table(rules: dict[str, list[str]], now: dt.datetime) -> list[tuple[str, str, str]]:
    """(condition, reason, detail) in priority order; details list the offending fields."""

    def listed(parts: list[str]) -> tuple[str, str]:
        # the condition is a plain OR of the parts' tests (cheap for the rows that pass);
        # the listing of the offending fields is built only for quarantined rows
        tests = [_PART.fullmatch(part) for part in parts]
        condition = " OR ".join(
            f"({m.group(1)})" if m else f"({part}) IS NOT NULL"
            for m, part in zip(tests, parts, strict=True)
        )
        return f"coalesce({condition}, false)", f"concat_ws(',', {', '.join(parts)})"

    missing, missing_detail = listed(rules["missing"])
    bad, bad_detail = listed(rules["bad"])
    finite, finite_detail = listed(rules["non_finite"])
    negative, negative_detail = listed([f"CASE WHEN d_{n} < 0 THEN '{n}' END" for n in _TOKENS])
    ranges, range_detail = listed([f"CASE WHEN {c} THEN '{n}' END" for n, c in _ranges().items()])
    future = f"TIMESTAMPTZ '{(now + FUTURE_TOLERANCE).isoformat()}'"
    unknown = "cost_usd IS NULL AND po.model IS NULL AND pg.model IS NULL"
    return [
        ("pre_reason IS NOT NULL", "pre_reason", "pre_detail"),
        (missing, "'missing_field'", missing_detail),
        (
            "s_use_case IS NULL OR trim(CAST(s_use_case AS VARCHAR)) = ''",
            "'no_use_case'",
            f"'{NO_USE_CASE}'",
        ),
        (bad, "'bad_type'", bad_detail),
        (finite, "'non_finite'", finite_detail),
        ("ts_naive", "'missing_timezone'", "'timestamp'"),
        (negative, "'negative_tokens'", negative_detail),
        (ranges, "'out_of_range'", range_detail),
        (f"ts > {future}", "'future_timestamp'", "'timestamp'"),
        (unknown, "'unknown_model'", "val.model"),
    ]


def classify_sql(
    shape: Shape,
    ts_mode: str,
    now: dt.datetime,
    use_case: str,
    *,
    source: str = "_rec",
    priced: bool = True,
    keep_raw: bool = True,
) -> str:
    """``_cls`` from ``_rec``: typed values, reason / detail, cost and its source.

    Args:
        shape: the log shape (its SQL expressions replace extracted values).
        ts_mode: how ``x_timestamp`` is typed (:func:`timestamp_sql`).
        now: the clock for the future-timestamp rule.
        use_case: the use-case expression (:func:`tasks.ingest.sql_records.use_case_sql`).
        source: the records (a table name or a parenthesised SELECT).
        priced: join the price table here (cost, ``unknown_model``); False leaves both to
            :func:`priced_sql` over the materialized result (no price join before the models
            seen are priced).
        keep_raw: carry the record's raw text; False carries NULL (the caller joins the line
            back for the few quarantined rows instead of copying every line).

    Returns:
        A SELECT over ``source`` (and the price table when ``priced``).
    """
    sources, values, rules = _typed_values(shape, ts_mode, use_case)
    table = _rule_table(rules, now)[:-1]  # unknown_model (last): decided by priced_sql
    kept = [
        "why." + (f"d_{n}" if k == "int" else n) for n, k, _ in CANONICAL_FIELDS if k != "ts"
    ] + ["why.ts"]
    reason = "CASE " + " ".join(f"WHEN {c} THEN {r}" for c, r, _ in table) + " END"
    # the detail's conditions run again only on the (few) rows that have a reason
    detail = (
        "CASE WHEN reason IS NULL THEN NULL "
        + " ".join(f"WHEN {c} THEN {d}" for c, _, d in table)
        + " END"
    )
    readable_id = (
        f"coalesce(nullif(trim(CAST(why.s_request_id AS VARCHAR)), ''),"
        f" nullif(regexp_extract(why.raw, '{_LOOSE_ID}', 1), ''))"
    )
    raw = "why.raw" if keep_raw else "NULL::VARCHAR AS raw"
    select = f"""
    WITH src AS (SELECT *, {", ".join(sources)} FROM {source}),
    val AS (SELECT *, {", ".join(values)} FROM src),
    why AS (SELECT *, {reason} AS reason FROM val)
    SELECT why.__file, why.__file_no, why.line_no, why.rec_no, {raw},
           {readable_id} AS s_request_id,
           {", ".join(kept)}, why.x_metadata, why.reason, {detail} AS detail"""
    if not priced:
        return select + " FROM why"
    return priced_sql(f"({select} FROM why)")


def priced_sql(source: str = "_cls") -> str:
    """Classified records plus their cost, its source, and the ``unknown_model`` rule (last).

    Args:
        source: classified records without prices (``classify_sql(priced=False)``).

    Returns:
        A SELECT over ``source`` and the price table: every column of ``source`` plus
        ``final_cost`` and ``cost_source``, ``reason`` / ``detail`` completed.
    """
    tokens: tuple[str, ...] = ("c.d_input_tokens", "c.d_output_tokens")
    tokens += ("c.d_cache_read_tokens", "c.d_cache_write_tokens")
    unknown = "c.cost_usd IS NULL AND po.model IS NULL AND pg.model IS NULL"
    return f"""
    SELECT c.* EXCLUDE (reason, detail),
           coalesce(c.reason, CASE WHEN {unknown} THEN 'unknown_model' END) AS reason,
           CASE WHEN c.reason IS NOT NULL THEN c.detail WHEN {unknown} THEN c.model END
               AS detail,
           coalesce(c.cost_usd, {cost_sql("po", *tokens)}, {cost_sql("pg", *tokens)})
               AS final_cost,
           CASE WHEN c.cost_usd IS NOT NULL THEN 'log' WHEN po.model IS NOT NULL THEN 'override'
                ELSE 'price_table' END AS cost_source
    FROM {source} c
    {price_join_sql("po", "c.ts", "c.model", "override")}
    {price_join_sql("pg", "c.ts", "c.model", "genai-prices")}
    """


def candidates_sql(first_only: str, not_seen: str, source: str = "_cls") -> str:
    """Rows of ``source`` to insert: valid, not in the warehouse yet, first in the chunk.

    Args:
        first_only: a QUALIFY clause keeping the first occurrence of a request_id, or "".
        not_seen: an anti-join clause against ids already stored (:func:`mark_seen`), or "".
        source: the priced, classified records.
    """
    ingest_id = "? || '-' || lpad(CAST(__file_no AS VARCHAR), 6, '0')"
    return f"""
        SELECT request_id, ts, CAST(timezone('UTC', ts) AS DATE), use_case, model,
               provider, prompt_id, config_id, experiment_id, variant_id, unit_id, propensity,
               temperature, top_p, CAST(d_max_tokens AS INTEGER),
               CAST(d_input_tokens AS BIGINT), CAST(d_output_tokens AS BIGINT),
               CAST(d_cache_read_tokens AS BIGINT), CAST(d_cache_write_tokens AS BIGINT),
               CAST(d_reasoning_tokens AS BIGINT), latency_ms,
               ttft_ms, final_cost, cost_source, status, error_type, quality,
               CAST(d_feedback AS TINYINT), task_type, user_segment, region, language,
               x_metadata::JSON, __file, line_no, {ingest_id}, __file_no
        FROM {source} c
        WHERE reason IS NULL {not_seen}
        {first_only}
    """


def quarantine_sql(*, typed: bool, by_line: bool = True, source: str = "_cls") -> str:
    """Bad rows of ``source`` into the quarantine, skipping a line it already holds.

    Args:
        typed: the chunk is a Parquet slice (raw text is the row as JSON).
        by_line: "already held" means same file, line, index, reason and text; False drops
            the line and index (a database pull reads a row at a new position each time).
        source: the priced, classified records; a text record without its own ``raw`` (a
            line, not an OTel span) takes the line's text from ``_chunk``.
    """
    same_place = (
        "AND q.source_line = n.source_line AND q.record_index = n.record_index" if by_line else ""
    )
    raw = (
        'json_merge_patch(to_json(ch), \'{"__file": null, "__file_no": null,'
        ' "__line_no": null}\')::VARCHAR'
        if typed
        else "coalesce(c.raw, ch.raw)"
    )
    join = (
        "LEFT JOIN _chunk ch ON ch.__line_no = c.line_no AND ch.__file_no = c.__file_no"
        if typed
        else "LEFT JOIN _chunk ch ON ch.line_no = c.line_no AND ch.__file_no = c.__file_no"
    )
    once = (
        ""
        if typed  # a Parquet file is never re-read in part: no line can be held already
        else f"""WHERE NOT EXISTS (
            SELECT 1 FROM quarantine q
            WHERE q.source_file = n.source_file {same_place}
              AND q.reason = n.reason AND q.raw IS NOT DISTINCT FROM n.raw
        )"""
    )
    return f"""
        INSERT INTO quarantine
        SELECT * FROM (
            SELECT ? || '-' || lpad(CAST(c.__file_no AS VARCHAR), 6, '0') AS ingest_id,
                   c.__file AS source_file, c.line_no AS source_line, c.rec_no AS record_index,
                   c.reason, nullif(c.detail, '') AS detail, c.s_request_id AS request_id,
                   {raw} AS raw, ? AS quarantined_at
            FROM {source} c {join}
            WHERE c.reason IS NOT NULL
        ) n
        {once}
    """
