"""SQL that flattens OpenTelemetry GenAI spans to one JSON object per span (``otel`` shape).

Accepted: OTLP JSON (``resourceSpans[].scopeSpans[].spans[]``, attributes as key / typed-value
lists; the collector's file exporter writes one such document per line) and the SDK console
exporter's span objects (plain ``attributes``, ISO times, ``context.span_id``). The flat object
holds resource attributes, the ``gen_ai.evaluation.result`` event's attributes and the span
attributes (later ones win on a key clash), plus ``otel.*`` keys for the span's own fields.
"""

from __future__ import annotations

__all__ = ["otel_docs_sql", "pre_reason_sql"]


def pre_reason_sql() -> str:
    """The reason a raw text record is unusable before any field is read, or NULL."""
    return (
        "CASE WHEN pre IS NOT NULL THEN pre WHEN NOT coalesce(json_valid(raw), false)"
        " THEN 'malformed_json' WHEN NOT regexp_matches(raw, '^\\s*\\{') THEN 'malformed_json' END"
    )


def _attr_object(expr: str) -> str:
    """OTLP ``[{key, value: {stringValue|intValue|...}}]`` -> a flat JSON object text."""
    value = (
        "coalesce(a->'value'->'stringValue', a->'value'->'intValue', a->'value'->'doubleValue',"
        " a->'value'->'boolValue', a->'value'->'arrayValue', a->'value'->'kvlistValue',"
        " 'null'::JSON)::VARCHAR"
    )
    return (
        f"('{{' || array_to_string(list_transform(coalesce(json_extract({expr}, '$[*]'), []),"
        f" lambda a: to_json(a->>'key') || ':' || {value}), ',') || '}}')::JSON"
    )


def _otlp_flat_sql() -> str:
    """One OTLP span (``s.span``, ``s.rattrs``) as a flat object: attributes plus ``otel.*``."""
    evaluation = (
        "list_filter(coalesce(json_extract(s.span, '$.events[*]'), []),"
        " lambda e: e->>'name' = 'gen_ai.evaluation.result')[1]->'attributes'"
    )
    span_attrs = _attr_object("s.span->'attributes'")
    return (
        f"json_merge_patch({_attr_object('s.rattrs')}, {_attr_object(evaluation)}, {span_attrs},"
        " json_object('otel.span_id', s.span->>'spanId', 'otel.trace_id', s.span->>'traceId',"
        " 'otel.parent_span_id', s.span->>'parentSpanId', 'otel.kind', s.span->>'kind',"
        " 'otel.name', s.span->>'name', 'otel.start_ns', s.span->>'startTimeUnixNano',"
        " 'otel.end_ns', s.span->>'endTimeUnixNano',"
        " 'otel.status_code', s.span->'status'->>'code',"
        " 'otel.status_message', s.span->'status'->>'message'))"
    )


def _console_flat_sql() -> str:
    """A console-exporter span (plain ``attributes``, ISO times) as a flat object."""
    ns = "CAST(epoch_ns(TRY_CAST(raw->>'{}' AS TIMESTAMPTZ)) AS VARCHAR)"
    return (
        "json_merge_patch(coalesce(raw->'resource'->'attributes', '{}'::JSON),"
        " coalesce(raw->'attributes', '{}'::JSON),"
        " json_object('otel.span_id', raw->'context'->>'span_id',"
        " 'otel.trace_id', raw->'context'->>'trace_id', 'otel.parent_span_id', raw->>'parent_id',"
        " 'otel.kind', raw->>'kind', 'otel.name', raw->>'name',"
        f" 'otel.start_ns', {ns.format('start_time')}, 'otel.end_ns', {ns.format('end_time')},"
        " 'otel.status_code', raw->'status'->>'status_code',"
        " 'otel.status_message', raw->'status'->>'description'))"
    )


def otel_docs_sql() -> str:
    """One row per span (flattened attributes) or per unusable line, from ``_chunk``."""
    console = (
        "CASE WHEN pre_reason IS NULL THEN coalesce(json_type(raw, '$.attributes') = 'OBJECT'"
        " AND json_type(raw, '$.context') = 'OBJECT', false) ELSE false END"
    )
    # the spans of a line in order, by one JSONPath, and beside them their resources'
    # attributes, one per span (a lambda per resource, usually one per line): three nested
    # lambdas under a CASE took 1.16 s for 20,000 spans, this 0.76 s (DuckDB runs list lambdas
    # under a CASE branch 2-3x slower; a line that is not OTLP gives them NULL instead)
    otlp = f"CASE WHEN pre_reason IS NULL AND NOT ({console}) THEN raw END"
    spans = f"json_extract({otlp}, '$.resourceSpans[*].scopeSpans[*].spans[*]')"
    rattrs = (
        f"flatten(list_transform(coalesce(json_extract({otlp}, '$.resourceSpans[*]'), []),"
        " lambda rs: list_resize([json_extract(rs, '$.resource.attributes')],"
        " len(json_extract(rs, '$.scopeSpans[*].spans[*]')),"
        " json_extract(rs, '$.resource.attributes'))))"
    )
    return f"""
    WITH lines AS (
        SELECT __file, __file_no, line_no, raw, {pre_reason_sql()} AS pre_reason
        FROM _chunk WHERE regexp_matches(raw, '\\S')
    ), exploded AS (
        SELECT __file, __file_no, line_no, raw, pre_reason,
               {spans} AS spans, {rattrs} AS rattrs,
               {console} AS is_console
        FROM lines
    ), one_span AS (
        SELECT __file, __file_no, line_no, generate_subscripts(spans, 1) - 1 AS rec_no,
               {{'span': unnest(spans), 'rattrs': unnest(rattrs)}} AS s
        FROM exploded WHERE len(spans) > 0
    ), flat AS (
        SELECT __file, __file_no, line_no, rec_no, s.span::VARCHAR AS raw,
               {_otlp_flat_sql()}::VARCHAR AS doc
        FROM one_span
        UNION ALL
        SELECT __file, __file_no, line_no, 0, raw, {_console_flat_sql()}::VARCHAR
        FROM exploded WHERE is_console
    )
    SELECT __file, __file_no, line_no, rec_no, raw, doc,
           CASE WHEN len(list_filter(json_keys(doc), lambda k: starts_with(k, 'gen_ai.'))) = 0
                THEN 'not_genai_span' END AS pre_reason,
           'spans' AS pre_detail
    FROM flat
    UNION ALL
    SELECT __file, __file_no, line_no, 0, raw, NULL, coalesce(pre_reason, 'missing_field'),
           CASE WHEN pre_reason IS NULL THEN 'resourceSpans[].scopeSpans[].spans[]' END
    FROM exploded WHERE coalesce(len(spans), 0) = 0 AND NOT coalesce(is_console, false)
    """
