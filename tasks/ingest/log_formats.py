"""Log shapes we read, as data: where each canonical field (DESIGN.md section 3) comes from.

Three shapes: ``canonical`` (our own record), ``litellm`` (a ``LiteLLM_SpendLogs`` export) and
``otel`` (OpenTelemetry GenAI spans: OTLP JSON, the collector's file exporter, the SDK's
console exporter; both GenAI semantic-convention generations, and OpenInference). A shape maps
every canonical field to source keys tried in order (a key path may reach into a nested object,
e.g. LiteLLM's ``metadata``), and may replace a field by a SQL expression over the extracted
values (latency from start/end times).
Keys that do not land in a column are kept in ``metadata`` (nulls too): nothing is dropped.

Detection is by keys / column names (:func:`detect_shape`); ``--format`` overrides it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

SHAPES = ("canonical", "litellm", "otel")

# (name, SQL type, required). "int" fields must be integral; "ts" is the timestamp.
CANONICAL_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("request_id", "str", True),
    ("timestamp", "ts", True),
    ("use_case", "str", True),
    ("model", "str", True),
    ("provider", "str", False),
    ("prompt_id", "str", False),
    ("config_id", "str", False),
    ("experiment_id", "str", False),
    ("variant_id", "str", False),
    ("unit_id", "str", False),
    ("propensity", "double", False),
    ("temperature", "double", False),
    ("top_p", "double", False),
    ("max_tokens", "int", False),
    ("input_tokens", "int", True),
    ("output_tokens", "int", True),
    ("cache_read_tokens", "int", False),
    ("cache_write_tokens", "int", False),
    ("reasoning_tokens", "int", False),
    ("latency_ms", "double", True),
    ("ttft_ms", "double", False),
    ("cost_usd", "double", False),
    ("status", "str", True),
    ("error_type", "str", False),
    ("quality", "double", False),
    ("feedback", "int", False),
    ("task_type", "str", False),
    ("user_segment", "str", False),
    ("region", "str", False),
    ("language", "str", False),
)
FIELD_NAMES = tuple(name for name, _, _ in CANONICAL_FIELDS)

KeyPath = tuple[str, ...]


@dataclass(frozen=True)
class Shape:
    """How one log shape maps to the canonical record.

    ``sources`` maps an extracted name (a canonical field or an auxiliary ``aux_*`` value) to the
    key paths tried in order. ``exprs`` replaces a canonical field by SQL over ``x_<name>``
    columns (the extracted text values). ``naive_timestamps_are_utc``: the producer writes UTC
    without a zone (LiteLLM does), so such timestamps are not quarantined as missing_timezone.
    """

    name: str
    sources: dict[str, tuple[KeyPath, ...]]
    exprs: dict[str, str] = field(default_factory=dict)
    naive_timestamps_are_utc: bool = False
    metadata_key: str | None = "metadata"

    def column_alternatives(self) -> dict[str, tuple[str, ...]]:
        """Per column field, the top-level keys that may fill it (first non-empty wins).

        Only the key that actually filled a column leaves the record; a fallback key that was
        not used, an ``aux_*`` input (end time, tags, ...) and everything else go to metadata.
        """
        return {
            name: tuple(path[0] for path in alts if len(path) == 1)
            for name, alts in self.sources.items()
            if not name.startswith("aux_") and any(len(path) == 1 for path in alts)
        }

    def top_level_keys(self) -> list[str]:
        """Every top-level key the shape reads, in a stable order (the extraction list)."""
        keys: list[str] = []
        for alternatives in self.sources.values():
            for path in alternatives:
                if path[0] not in keys:
                    keys.append(path[0])
        if self.metadata_key and self.metadata_key not in keys:
            keys.append(self.metadata_key)
        return keys


def _same(names: Iterable[str]) -> dict[str, tuple[KeyPath, ...]]:
    return {name: ((name,),) for name in names}


CANONICAL = Shape(name="canonical", sources=_same(FIELD_NAMES))


def epoch_seconds_sql(number: str) -> str:
    """SQL: seconds since the epoch of an epoch number in seconds, ms, us or ns, told apart by
    its size (the record timestamp's rule, for every shape).

    Args:
        number: SQL of the number (DOUBLE).

    >>> import duckdb
    >>> values = "(VALUES (1790932501.5), (1790932501500), (1790932501500000)) t(x)"
    >>> duckdb.sql(f"SELECT {epoch_seconds_sql('x')} FROM {values}").fetchall()
    [(1790932501.5,), (1790932501.5,), (1790932501.5,)]
    """
    return (
        f"{number} / CASE WHEN abs({number}) >= 1e17 THEN 1e9 WHEN abs({number}) >= 1e14"
        f" THEN 1e6 WHEN abs({number}) >= 1e11 THEN 1e3 ELSE 1 END"
    )


def _epoch_ms(expr: str) -> str:
    """SQL: milliseconds since the epoch of a time written as ISO text or as an epoch number
    (:func:`epoch_seconds_sql`), or NULL.

    >>> import duckdb
    >>> times = "(VALUES ('2026-10-02T09:15:01.5'), ('1790932501500'), ('1790932501.5')) t(x)"
    >>> duckdb.sql(f"SELECT {_epoch_ms('x')} FROM {times}").fetchall()
    [(1790932501500.0,), (1790932501500.0,), (1790932501500.0,)]
    """
    n = f"TRY_CAST({expr} AS DOUBLE)"
    return f"coalesce(({epoch_seconds_sql(n)}) * 1000, epoch_ms(TRY_CAST({expr} AS TIMESTAMP)))"


_LITELLM_MD: tuple[str, ...] = ("prompt_id", "config_id", "experiment_id", "variant_id")
_LITELLM_MD += ("propensity", "temperature", "top_p", "max_tokens", "quality", "feedback")
_LITELLM_MD += ("task_type", "user_segment", "region", "language", "error_type")

LITELLM = Shape(
    name="litellm",
    sources={
        "request_id": (("request_id",),),
        "timestamp": (("startTime",),),
        "use_case": (("metadata", "use_case"), ("metadata", "tags", "0"), ("request_tags", "0")),
        "model": (("model",), ("model_group",)),
        "provider": (("custom_llm_provider",),),
        "unit_id": (("end_user",), ("user",), ("session_id",)),
        "input_tokens": (("prompt_tokens",),),
        "output_tokens": (("completion_tokens",),),
        "latency_ms": (("request_duration_ms",),),
        "cost_usd": (("spend",),),
        "status": (("status",), ("metadata", "status")),
        # LiteLLM's usage object (metadata.usage_object) carries the cache and reasoning counts
        "cache_read_tokens": (
            ("metadata", "usage_object", "prompt_tokens_details", "cached_tokens"),
            ("metadata", "usage_object", "cache_read_input_tokens"),
        ),
        "cache_write_tokens": (("metadata", "usage_object", "cache_creation_input_tokens"),),
        "reasoning_tokens": (
            ("metadata", "usage_object", "completion_tokens_details", "reasoning_tokens"),
        ),
        # use-case mapping inputs (config / --use-case): see tasks/ingest/sql_records.py
        "aux_model_group": (("model_group",),),
        "aux_key_alias": (("metadata", "user_api_key_alias"),),
        "aux_tags": (("request_tags",), ("metadata", "tags")),
        "aux_end": (("endTime",),),
        "aux_first_token": (("completionStartTime",),),
        **{name: (("metadata", name),) for name in _LITELLM_MD},
    },
    exprs={
        # request_duration_ms is recent; older exports only have start/end times, as text or,
        # from pandas' to_json, as epoch milliseconds
        "latency_ms": f"coalesce(x_latency_ms, CAST({_epoch_ms('x_aux_end')}"
        f" - {_epoch_ms('x_timestamp')} AS VARCHAR))",
        "ttft_ms": f"CAST({_epoch_ms('x_aux_first_token')}"
        f" - {_epoch_ms('x_timestamp')} AS VARCHAR)",
    },
    naive_timestamps_are_utc=True,
)

# OTel spans are first flattened (tasks/ingest/sql_otel.py) into one object per span whose
# keys are the attribute names (span attributes over resource attributes) plus ``otel.*`` keys.
# Two attribute vocabularies: OpenTelemetry's GenAI conventions (``gen_ai.*``, both
# generations) and OpenInference's (``llm.*``: Arize Phoenix, and the LangChain / LlamaIndex /
# OpenAI instrumentors that export to it), GenAI first where a span carries both.
_INVOCATION = "llm.invocation_parameters"  # OpenInference: the request's parameters, JSON text
OTEL = Shape(
    name="otel",
    sources={
        "request_id": (("gen_ai.response.id",), ("otel.span_id",)),
        "timestamp": (("otel.start_ns",),),
        "use_case": (
            ("llmopt.use_case",),
            ("gen_ai.agent.name",),
            ("openinference.project.name",),  # Phoenix's project, a resource attribute
            ("service.name",),
        ),
        "model": (
            ("gen_ai.request.model",),
            ("gen_ai.response.model",),
            ("llm.request.model_name",),
            (_INVOCATION, "model"),
            (_INVOCATION, "model_name"),
            ("llm.model_name",),
            ("llm.response.model_name",),
        ),
        "provider": (
            ("gen_ai.provider.name",),
            ("gen_ai.system",),
            ("llm.provider",),
            ("llm.system",),
        ),
        "prompt_id": (("llmopt.prompt_id",),),
        "config_id": (("llmopt.config_id",),),
        "experiment_id": (("llmopt.experiment_id",),),
        "variant_id": (("llmopt.variant_id",),),
        "unit_id": (
            ("gen_ai.conversation.id",),
            ("llmopt.unit_id",),
            ("session.id",),
            ("user.id",),
        ),
        "propensity": (("llmopt.propensity",),),
        "temperature": (("gen_ai.request.temperature",), (_INVOCATION, "temperature")),
        "top_p": (("gen_ai.request.top_p",), (_INVOCATION, "top_p")),
        "max_tokens": (
            ("gen_ai.request.max_tokens",),
            (_INVOCATION, "max_tokens"),
            (_INVOCATION, "max_completion_tokens"),
        ),
        # current names first, then the older generation (what LiteLLM's OTel callback emits)
        "input_tokens": (
            ("gen_ai.usage.input_tokens",),
            ("gen_ai.usage.prompt_tokens",),
            ("llm.token_count.prompt",),
        ),
        "output_tokens": (
            ("gen_ai.usage.output_tokens",),
            ("gen_ai.usage.completion_tokens",),
            ("llm.token_count.completion",),
        ),
        "cache_read_tokens": (
            ("gen_ai.usage.cache_read.input_tokens",),
            ("gen_ai.usage.cache_read_input_tokens",),
            ("llm.token_count.prompt_details.cache_read",),
        ),
        "cache_write_tokens": (
            ("gen_ai.usage.cache_creation.input_tokens",),
            ("gen_ai.usage.cache_creation_input_tokens",),
            ("llm.token_count.prompt_details.cache_write",),
        ),
        "reasoning_tokens": (
            ("gen_ai.usage.reasoning.output_tokens",),
            ("llm.token_count.completion_details.reasoning",),
        ),
        # error.type (GenAI) or the type of the span's recorded exception (its "exception" event)
        "error_type": (("error.type",), ("exception.type",)),
        "quality": (("gen_ai.evaluation.score.value",),),
        "feedback": (("llmopt.feedback",),),
        "task_type": (("llmopt.task_type",),),
        "user_segment": (("llmopt.user_segment",),),
        "region": (("llmopt.region",),),
        "language": (("llmopt.language",),),
        "cost_usd": (("llmopt.cost_usd",), ("llm.cost.total",)),
        "aux_end": (("otel.end_ns",),),
        "aux_status": (("otel.status_code",),),
    },
    exprs={
        "latency_ms": "CAST((TRY_CAST(x_aux_end AS HUGEINT) - TRY_CAST(x_timestamp AS HUGEINT))"
        " / 1e6 AS VARCHAR)",
        "status": "CASE WHEN x_aux_status IN ('2', 'STATUS_CODE_ERROR', 'ERROR',"
        " 'StatusCode.ERROR') OR x_error_type IS NOT NULL"
        " THEN 'error' ELSE 'success' END",
    },
    metadata_key=None,
)

# status spellings users' logs carry; anything else is quarantined as out_of_range
STATUS_SPELLINGS = {
    "success": ("success", "succeeded", "ok"),
    "error": ("error", "failure", "failed", "fail"),
}
# failures that name their kind: status ``error``, and the word is the error_type when the
# record has none
TYPED_FAILURES = ("timeout", "timed_out", "cancelled", "canceled", "rate_limited")
# an HTTP status code as the status: below 400 ``success``, else ``error`` (``http_<code>``)
_HTTP_CODE = "'[1-5][0-9][0-9]'"


def status_sql(expr: str) -> str:
    """``success`` / ``error`` from a status text in any case and spacing (LiteLLM's ``failure``,
    an SDK's ``OK``, ``timeout``, an HTTP status code); any other value passes unchanged, to
    fail the range rule.

    Args:
        expr: SQL of the status value.

    Returns:
        A SQL expression (VARCHAR).

    >>> import duckdb
    >>> values = "(VALUES (' OK'), ('Failure'), ('timeout'), ('200'), ('429'), ('pending')) t(s)"
    >>> [s for (s,) in duckdb.sql(f"SELECT {status_sql('s')} FROM {values}").fetchall()]
    ['success', 'error', 'error', 'success', 'error', 'pending']
    """
    text = f"CAST({expr} AS VARCHAR)"
    spellings = {**STATUS_SPELLINGS, "error": STATUS_SPELLINGS["error"] + TYPED_FAILURES}
    whens = " ".join(
        f"WHEN lower(trim({text})) IN ({', '.join(repr(v) for v in words)}) THEN {status!r}"
        for status, words in spellings.items()
    )
    code = (
        f"WHEN regexp_full_match(trim({text}), {_HTTP_CODE}) THEN"
        f" CASE WHEN CAST(trim({text}) AS INTEGER) < 400 THEN 'success' ELSE 'error' END"
    )
    return f"CASE {whens} {code} ELSE {text} END"


def error_type_sql(status: str, error_type: str) -> str:
    """The record's error_type, else what its status says of the failure's kind: ``http_429``
    for an HTTP status of 400 or more, ``timeout`` for ``timeout`` (:data:`TYPED_FAILURES`).

    Args:
        status: SQL of the status value as the record wrote it.
        error_type: SQL of the record's error_type value.

    Returns:
        A SQL expression (VARCHAR).

    >>> import duckdb
    >>> rows = "(VALUES ('503', NULL), ('Timeout', NULL), ('500', 'busy'), ('200', NULL)) t(s, e)"
    >>> [e for (e,) in duckdb.sql(f"SELECT {error_type_sql('s', 'e')} FROM {rows}").fetchall()]
    ['http_503', 'timeout', 'busy', None]
    """
    text = f"trim(CAST({status} AS VARCHAR))"
    words = ", ".join(repr(w) for w in TYPED_FAILURES)
    return (
        f"coalesce(CAST({error_type} AS VARCHAR), CASE"
        f" WHEN regexp_full_match({text}, {_HTTP_CODE}) AND CAST({text} AS INTEGER) >= 400"
        f" THEN 'http_' || {text} WHEN lower({text}) IN ({words}) THEN lower({text}) END)"
    )


SHAPE_BY_NAME = {"canonical": CANONICAL, "litellm": LITELLM, "otel": OTEL}


_CANONICAL_CORE = frozenset({"timestamp", "input_tokens", "output_tokens"})


def detect_shape(keys: Iterable[str]) -> str:
    """Name the shape of a record from its top-level keys (or a file's column names).

    A record with the canonical timestamp and token keys is canonical whatever extra keys it
    carries (an extra ``scopeSpans``, ``gen_ai.*`` or ``spend`` key goes to metadata).

    >>> detect_shape(["resourceSpans"]), detect_shape(["startTime", "spend", "model"])
    ('otel', 'litellm')
    >>> detect_shape(["timestamp", "input_tokens", "output_tokens", "scopeSpans", "spend"])
    'canonical'
    """
    found = set(keys)
    if found >= _CANONICAL_CORE:
        return "canonical"
    if "resourceSpans" in found or "scopeSpans" in found:
        return "otel"
    if any(key.startswith("gen_ai.") for key in found) or (
        {"context", "attributes"} <= found and "start_time" in found
    ):
        return "otel"
    if {"startTime", "prompt_tokens", "completion_tokens"} <= found or {
        "spend",
        "startTime",
    } <= found:
        return "litellm"
    return "canonical"


__all__ = [
    "CANONICAL",
    "CANONICAL_FIELDS",
    "FIELD_NAMES",
    "LITELLM",
    "OTEL",
    "SHAPES",
    "SHAPE_BY_NAME",
    "Shape",
    "detect_shape",
    "epoch_seconds_sql",
    "error_type_sql",
    "status_sql",
]
