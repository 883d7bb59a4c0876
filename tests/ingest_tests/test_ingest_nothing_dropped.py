"""Property: every input key that does not land in a column lands in metadata, unchanged.

Generated canonical records carry extra keys (any JSON value, null included) and sometimes their
own ``metadata`` object whose keys may collide with the extras; after ingest each stored row's
metadata holds the record's metadata untouched plus every extra key (a colliding one as
``record.<key>``). Generated OTLP spans carry extra span and resource attributes of every value
kind; each lands in its span's metadata with the value as written. OTLP documents with anything
where their parts go are ingested without failing the file, every span or line accounted for.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tasks.ingest.log_formats import FIELD_NAMES, OTEL
from tasks.ingest.pipeline import ingest_paths
from tasks.warehouse.connection import apply_schema

_KEY = st.text(alphabet=string.ascii_letters + string.digits + "_.-/~ é", min_size=1, max_size=12)
_KEYS = _KEY.filter(lambda k: k not in FIELD_NAMES and k != "metadata" and k.strip() == k)
_SCALAR = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.text(max_size=20)
_VALUE = st.recursive(
    _SCALAR | st.sampled_from([0.5, -1.25, 1e-3]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEY, inner, max_size=3),
    max_leaves=6,
)
_RECORD = st.fixed_dictionaries(
    {
        "extras": st.dictionaries(_KEYS, _VALUE, max_size=5),
        "metadata": st.none()
        | st.dictionaries(_KEYS | st.sampled_from(["team", "a"]), _VALUE, max_size=4),
    }
)


def _base(i: int) -> dict[str, Any]:
    return {
        "request_id": f"p-{i}",
        "timestamp": "2026-10-01T00:00:00Z",
        "use_case": "support-summarize",
        "model": "gpt-4o-mini",
        "input_tokens": 10,
        "output_tokens": 5,
        "latency_ms": 100.0,
        "status": "success",
    }


@pytest.mark.slow  # 4-6 s: 20 generated files, each ingested through DuckDB
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_RECORD, min_size=1, max_size=4))
# extra keys that name another shape's keys: the record was taken for an OTel span or a
# LiteLLM row and quarantined whole (Hypothesis draws string constants from the code under test)
@example([{"extras": {"scopeSpans": None}, "metadata": None}])
@example([{"extras": {"gen_ai.system": "openai", "spend": 1, "startTime": "x"}, "metadata": None}])
def test_every_input_field_lands_in_a_column_or_in_metadata(records: list[dict[str, Any]]) -> None:
    con = duckdb.connect()
    apply_schema(con)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gen.jsonl"
        lines = []
        for i, rec in enumerate(records):
            row = {**_base(i), **rec["extras"]}
            if rec["metadata"] is not None:
                row["metadata"] = rec["metadata"]
            lines.append(json.dumps(row))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        report = ingest_paths([path], con=con, validate=False)
    assert report.ingested == len(records), report.to_dict()
    stored = dict(con.execute("SELECT request_id, metadata FROM usage_logs").fetchall())
    for i, rec in enumerate(records):
        metadata = json.loads(stored[f"p-{i}"]) if stored[f"p-{i}"] else {}
        own = rec["metadata"] or {}
        expected = dict(own)
        for key, value in rec["extras"].items():
            expected["record." + key if key in own else key] = value
        assert metadata == expected
    con.close()


# OTLP attribute values as exporters write them: the kind names the JSON value's type (an
# intValue is a string in OTLP JSON, a number from some SDKs)
_OTLP_VALUE = (
    st.builds(lambda v: ("stringValue", v), st.text(max_size=12))
    | st.builds(lambda v: ("intValue", v), st.integers(-(10**9), 10**9) | st.just("42"))
    | st.builds(lambda v: ("doubleValue", v), st.sampled_from([0.5, -1.25, 1e-3]))
    | st.builds(lambda v: ("boolValue", v), st.booleans())
)
_SPAN_KEYS = {key for paths in OTEL.sources.values() for path in paths for key in path[:1]}
_ATTR_KEYS = _KEYS.filter(lambda k: k not in _SPAN_KEYS and not k.startswith("otel."))


def _otlp(attributes: dict[str, tuple[str, Any]]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {kind: v}} for k, (kind, v) in attributes.items()]


@pytest.mark.slow  # 3-5 s: 15 generated files of spans, each ingested through DuckDB
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.dictionaries(_ATTR_KEYS, _OTLP_VALUE, max_size=4), min_size=1, max_size=3),
    st.dictionaries(_ATTR_KEYS, _OTLP_VALUE, max_size=3),
)
def test_every_span_attribute_lands_in_a_column_or_in_metadata(
    spans: list[dict[str, tuple[str, Any]]], resource: dict[str, tuple[str, Any]]
) -> None:
    """An OTLP line of spans with extra span and resource attributes (the span's win on a clash):
    each extra attribute is in the span's metadata with the value as written."""
    known = {
        "gen_ai.request.model": ("stringValue", "gpt-4o-mini"),
        "gen_ai.usage.input_tokens": ("intValue", "10"),
        "gen_ai.usage.output_tokens": ("intValue", 5),
        "llmopt.use_case": ("stringValue", "support-summarize"),
    }
    body = [
        {
            "spanId": f"{i:016x}",
            "traceId": "ab" * 16,
            "startTimeUnixNano": "1790845200000000000",
            "endTimeUnixNano": "1790845200500000000",
            "attributes": _otlp({**extra, **known}),
        }
        for i, extra in enumerate(spans)
    ]
    line = {
        "resourceSpans": [
            {"resource": {"attributes": _otlp(resource)}, "scopeSpans": [{"spans": body}]}
        ]
    }
    con = duckdb.connect()
    apply_schema(con)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spans.jsonl"
        path.write_text(json.dumps(line) + "\n", encoding="utf-8")
        report = ingest_paths([path], con=con, validate=False, shape="otel")
    assert report.ingested == len(spans), report.to_dict()
    stored = dict(con.execute("SELECT request_id, metadata FROM usage_logs").fetchall())
    for i, extra in enumerate(spans):
        metadata = json.loads(stored[f"{i:016x}"])
        expected = {k: v for k, (_, v) in {**resource, **extra}.items()}
        assert {k: metadata.get(k, "<missing>") for k in expected} == expected
    con.close()


# any JSON where an OTLP document's parts go: wrong types, nulls, empty and nested lists
_ANY = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
_SPAN_PART = st.fixed_dictionaries(
    {},
    optional={
        "spanId": _ANY,
        "attributes": _ANY
        | st.lists(st.fixed_dictionaries({"key": _ANY, "value": _ANY}), max_size=2),
        "events": _ANY,
        "status": _ANY,
        "startTimeUnixNano": _ANY,
    },
)
_OTLP_DOC = st.fixed_dictionaries(
    {
        "resourceSpans": _ANY
        | st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "resource": _ANY | st.fixed_dictionaries({"attributes": _ANY}),
                    "scopeSpans": _ANY
                    | st.lists(
                        st.fixed_dictionaries({}, optional={"spans": _ANY | st.lists(_SPAN_PART)}),
                        max_size=2,
                    ),
                },
            ),
            max_size=2,
        )
    },
    optional={"attributes": _ANY, "context": _ANY},
)


@pytest.mark.slow  # 3-5 s: 15 generated files of malformed OTLP, each ingested through DuckDB
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_OTLP_DOC, min_size=1, max_size=4))
def test_otlp_documents_of_any_shape_are_accounted_for_and_never_fail_the_file(
    docs: list[dict[str, Any]],
) -> None:
    """Whatever sits where an OTLP document's parts go, the file is ingested (no error) and
    every line is a span row, a quarantined span or a quarantined line: nothing is lost."""
    con = duckdb.connect()
    apply_schema(con)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "odd.jsonl"
        path.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
        report = ingest_paths([path], con=con, validate=False, shape="otel")
    (item,) = report.files
    assert item.error is None and item.status == "ingested", item
    assert report.balanced, report.to_dict()
    stored, held = con.execute(
        "SELECT (SELECT count(*) FROM usage_logs), (SELECT count(*) FROM quarantine)"
    ).fetchone() or (0, 0)
    assert stored + held == item.lines_read >= len(docs)
    con.close()
