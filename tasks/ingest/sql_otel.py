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
_ATTRIBUTES: list[object] = [{"key": "VARCHAR", "value": dict.fromkeys(_VALUE_KINDS, "JSON")}]
_SPAN = {
    **dict.fromkeys(("spanId", "traceId", "parentSpanId", "kind", "name"), "VARCHAR"),
    **dict.fromkeys(("startTimeUnixNano", "endTimeUnixNano"), "VARCHAR"),
    "status": {"code": "VARCHAR", "message": "VARCHAR"},
    "attributes": _ATTRIBUTES,
    "events": [{"name": "VARCHAR", "attributes": _ATTRIBUTES}],
}
#: a whole line in one parse: OTLP's resources, their attributes and their spans typed
#: (``json_transform`` is not strict: a part of another type is NULL, the rest stays), and a
#: console span's ``attributes`` and ``context`` as JSON (they tell the two forms apart)
_LINE = json.dumps(
    {
        "resourceSpans": [
            {"resource": {"attributes": _ATTRIBUTES}, "scopeSpans": [{"spans": [_SPAN]}]}
        ],
        "attributes": "JSON",
        "context": "JSON",
    }
)


def _attr_object(expr: str) -> str:
    """OTLP ``[{key, value: {stringValue|intValue|...}}]`` (parsed, typed) -> a flat JSON
    object; the first kind present wins, in ``_VALUE_KINDS`` order.
    """
    value = ", ".join(f"a.value.{kind}" for kind in _VALUE_KINDS)
    return (
        f"('{{' || array_to_string(list_transform(coalesce({expr}, []),"
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
    """One OTLP span (``sp``: typed as ``_SPAN``; ``rattrs``: its resource's attributes) as a
    flat object: attributes plus ``otel.*``."""
    events = ", ".join(
        _attr_object(_event_attributes("sp.events", name, "attributes")) for name in _EVENTS
    )
    return (
        f"json_merge_patch({_attr_object('rattrs')}, {events},"
        f" {_attr_object('sp.attributes')},"
        " json_object('otel.span_id', sp.spanId, 'otel.trace_id', sp.traceId,"
        " 'otel.parent_span_id', sp.parentSpanId, 'otel.kind', sp.kind,"
        " 'otel.name', sp.name, 'otel.start_ns', sp.startTimeUnixNano,"
        " 'otel.end_ns', sp.endTimeUnixNano,"
        " 'otel.status_code', sp.status.code, 'otel.status_message', sp.status.message))"
    )


def _console_flat_sql(src: str) -> str:
    """A console-exporter span (``src``: its text; plain ``attributes``, ISO times) as a flat
    object."""
    ns = f"CAST(epoch_ns(TRY_CAST({src}->>'{{}}' AS TIMESTAMPTZ)) AS VARCHAR)"
    listed = f"json_transform({src}->'events', '{_CONSOLE_EVENTS}')"
    events = ", ".join(
        f"coalesce({_event_attributes(f'try({listed})', name, 'attributes')}, '{{}}'::JSON)"
        for name in _EVENTS
    )
    return (
        f"json_merge_patch(coalesce({src}->'resource'->'attributes', '{{}}'::JSON),"
        f" {events}, coalesce({src}->'attributes', '{{}}'::JSON),"
        f" json_object('otel.span_id', {src}->'context'->>'span_id',"
        f" 'otel.trace_id', {src}->'context'->>'trace_id',"
        f" 'otel.parent_span_id', {src}->>'parent_id',"
        f" 'otel.kind', {src}->>'kind', 'otel.name', {src}->>'name',"
        f" 'otel.start_ns', {ns.format('start_time')}, 'otel.end_ns', {ns.format('end_time')},"
        f" 'otel.status_code', {src}->'status'->>'status_code',"
        f" 'otel.status_message', {src}->'status'->>'description'))"
    )


def otel_docs_sql() -> str:
    """One row per span (flattened attributes) or per unusable line, from ``_chunk``."""
    console = (
        "coalesce(json_type(p.attributes) = 'OBJECT' AND json_type(p.context) = 'OBJECT', false)"
    )
    # a line is parsed once for all its parts (``_LINE``) and once more for its spans' own text
    # (kept for the quarantine); the spans, in order, and beside each its resource's attributes
    # (a lambda per resource, usually one a line) come from the parsed lists
    spans = "flatten(list_transform(p.resourceSpans, lambda rs: flatten(list_transform("
    spans += "rs.scopeSpans, lambda ss: ss.spans))))"
    rattrs = (
        "flatten(list_transform(p.resourceSpans, lambda rs: list_resize([rs.resource.attributes],"
        " coalesce(list_sum(list_transform(rs.scopeSpans, lambda ss: len(ss.spans))), 0),"
        " rs.resource.attributes)))"
    )
    texts = "json_extract(CASE WHEN pre_reason IS NULL AND NOT is_console THEN raw END,"
    texts += " '$.resourceSpans[*].scopeSpans[*].spans[*]')"
    # one pass: a line's spans (or, for a console span or an unusable line, the line itself)
    # unnest to one row each; the line's text rides along only where it is the record (an
    # OTLP line's text copied to each of its spans was 100x its size for a 100-span line)
    has_spans = "coalesce(len(spans), 0) > 0 AND NOT is_console"
    one = "[NULL]"
    return f"""
    WITH exploded AS (
        SELECT __file, __file_no, line_no, raw, pre_reason, is_console, {texts} AS texts,
               spans, rattrs
        FROM (
            SELECT *, {console} AS is_console, {spans} AS spans, {rattrs} AS rattrs
            FROM (
                SELECT __file, __file_no, line_no, raw, pre_reason,
                       CASE WHEN pre_reason IS NULL THEN json_transform(raw, '{_LINE}') END AS p
                FROM (
                    SELECT __file, __file_no, line_no, raw, {pre_reason_sql()} AS pre_reason
                    FROM _chunk WHERE regexp_matches(raw, '\\S')
                )
            )
        )
    ), items AS (
        SELECT __file, __file_no, line_no, pre_reason, is_console,
               CASE WHEN {has_spans} THEN NULL ELSE raw END AS raw,
               unnest(CASE WHEN {has_spans} THEN texts ELSE {one} END) AS span,
               unnest(CASE WHEN {has_spans} THEN spans ELSE {one} END) AS sp,
               unnest(CASE WHEN {has_spans} THEN rattrs ELSE {one} END) AS rattrs,
               generate_subscripts(CASE WHEN {has_spans} THEN spans ELSE {one} END, 1) - 1
                   AS rec_no
        FROM exploded
    ), flat AS (
        SELECT __file, __file_no, line_no, rec_no, pre_reason, span IS NOT NULL AS is_span,
               is_console, coalesce(span::VARCHAR, raw) AS raw,
               {_otlp_flat_sql()}::VARCHAR AS otlp_doc,
               {_console_flat_sql("console_raw")}::VARCHAR AS console_doc
        FROM (SELECT *, CASE WHEN is_console THEN raw END AS console_raw FROM items)
    )
    SELECT __file, __file_no, line_no, rec_no, raw, doc,
           CASE WHEN doc IS NULL THEN coalesce(pre_reason, 'missing_field')
                WHEN len(list_filter(json_keys(doc),
                         lambda k: starts_with(k, 'gen_ai.') OR starts_with(k, 'llm.'))) = 0
                THEN 'not_genai_span' END AS pre_reason,
           CASE WHEN doc IS NOT NULL THEN 'spans' WHEN pre_reason IS NULL
                THEN 'resourceSpans[].scopeSpans[].spans[]' END AS pre_detail
    FROM (SELECT *, CASE WHEN is_span THEN otlp_doc WHEN is_console THEN console_doc END AS doc
          FROM flat)
    """
