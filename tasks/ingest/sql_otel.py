"""SQL that flattens OpenTelemetry GenAI spans to one JSON object per span (``otel`` shape).

Accepted: OTLP JSON (``resourceSpans[].scopeSpans[].spans[]``, attributes as key / typed-value
lists; the collector's file exporter writes one such document per line) and the SDK console
exporter's span objects (plain ``attributes``, ISO times, ``context.span_id``). The flat object
holds resource attributes, the attributes of the ``gen_ai.evaluation.result`` event and of the
``exception`` event (``exception.type``, ``exception.message``, ...) and the span attributes
(later ones win on a key clash), plus ``otel.*`` keys for the span's own fields. A span is an
LLM call when it carries a GenAI (``gen_ai.*``) or an OpenInference (``llm.*``) attribute;
other spans (HTTP, retrievers, chains) are quarantined as ``not_genai_span``.
"""

from __future__ import annotations

import json

__all__ = ["otel_docs_sql", "pre_reason_sql"]


def pre_reason_sql() -> str:
    """The reason a raw text record is unusable before any field is read, or NULL."""
    return (
        "CASE WHEN pre IS NOT NULL THEN pre WHEN NOT coalesce(json_valid(raw), false)"
        " THEN 'malformed_json' WHEN NOT regexp_matches(raw, '^\\s*\\{') THEN 'malformed_json' END"
    )


_VALUE_KINDS = ("stringValue", "intValue", "doubleValue", "boolValue", "arrayValue", "kvlistValue")
_ATTRIBUTES = json.dumps([{"key": "VARCHAR", "value": dict.fromkeys(_VALUE_KINDS, "JSON")}])
_SPAN = json.dumps(
    {
        **dict.fromkeys(("spanId", "traceId", "parentSpanId", "kind", "name"), "VARCHAR"),
        **dict.fromkeys(("startTimeUnixNano", "endTimeUnixNano"), "VARCHAR"),
        "status": {"code": "VARCHAR", "message": "VARCHAR"},
        "attributes": "JSON",
        "events": [{"name": "VARCHAR", "attributes": "JSON"}],
    }
)


def _attr_object(expr: str) -> str:
    """OTLP ``[{key, value: {stringValue|intValue|...}}]`` -> a flat JSON object text.

    One ``json_transform`` of the list (not strict: a value of another kind is NULL) instead
    of a dozen small parses per attribute; the first kind present wins, in ``_VALUE_KINDS``
    order.
    """
    value = ", ".join(f"a.value.{kind}" for kind in _VALUE_KINDS)
    return (
        f"('{{' || array_to_string(list_transform("
        f"coalesce(try(json_transform({expr}, '{_ATTRIBUTES}')), []),"
        f" lambda a: to_json(a.key) || ':' || coalesce({value}, 'null'::JSON)::VARCHAR), ',')"
        " || '}')::JSON"
    )


def _event_attributes(events: str, name: str, field: str) -> str:
    """SQL of the attributes of the first event called ``name`` in the list ``events``."""
    return f"list_filter(coalesce({events}, []), lambda e: e.name = '{name}')[1].{field}"


_CONSOLE_EVENTS = json.dumps([{"name": "VARCHAR", "attributes": "JSON"}])
#: the span events whose attributes join the flat object, in merge order
_EVENTS = ("gen_ai.evaluation.result", "exception")


def _otlp_flat_sql() -> str:
    """One OTLP span (``sp``: the span parsed once to ``_SPAN``; ``s.rattrs``) as a flat
    object: attributes plus ``otel.*``."""
    events = ", ".join(
        _attr_object(_event_attributes("sp.events", name, "attributes")) for name in _EVENTS
    )
    return (
        f"json_merge_patch({_attr_object('s.rattrs')}, {events},"
        f" {_attr_object('sp.attributes')},"
        " json_object('otel.span_id', sp.spanId, 'otel.trace_id', sp.traceId,"
        " 'otel.parent_span_id', sp.parentSpanId, 'otel.kind', sp.kind,"
        " 'otel.name', sp.name, 'otel.start_ns', sp.startTimeUnixNano,"
        " 'otel.end_ns', sp.endTimeUnixNano,"
        " 'otel.status_code', sp.status.code, 'otel.status_message', sp.status.message))"
    )


def _console_flat_sql() -> str:
    """A console-exporter span (plain ``attributes``, ISO times) as a flat object."""
    ns = "CAST(epoch_ns(TRY_CAST(raw->>'{}' AS TIMESTAMPTZ)) AS VARCHAR)"
    listed = f"json_transform(raw->'events', '{_CONSOLE_EVENTS}')"
    events = ", ".join(
        f"coalesce({_event_attributes(f'try({listed})', name, 'attributes')}, '{{}}'::JSON)"
        for name in _EVENTS
    )
    return (
        "json_merge_patch(coalesce(raw->'resource'->'attributes', '{}'::JSON),"
        f" {events}, coalesce(raw->'attributes', '{{}}'::JSON),"
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
        FROM (SELECT *, try(json_transform(s.span, '{_SPAN}')) AS sp FROM one_span)
        UNION ALL
        SELECT __file, __file_no, line_no, 0, raw, {_console_flat_sql()}::VARCHAR
        FROM exploded WHERE is_console
    )
    SELECT __file, __file_no, line_no, rec_no, raw, doc,
           CASE WHEN len(list_filter(json_keys(doc),
                         lambda k: starts_with(k, 'gen_ai.') OR starts_with(k, 'llm.'))) = 0
                THEN 'not_genai_span' END AS pre_reason,
           'spans' AS pre_detail
    FROM flat
    UNION ALL
    SELECT __file, __file_no, line_no, 0, raw, NULL, coalesce(pre_reason, 'missing_field'),
           CASE WHEN pre_reason IS NULL THEN 'resourceSpans[].scopeSpans[].spans[]' END
    FROM exploded WHERE coalesce(len(spans), 0) = 0 AND NOT coalesce(is_console, false)
    """
