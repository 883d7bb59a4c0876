"""SQL that turns a chunk (``_chunk``) into extracted records (``_rec``): one row per record.

``_rec`` holds, per record, ``x_<field>`` values as text (or typed, for Parquet) and
``x_metadata``: every input key that did not land in a column, nulls included. Only the key that
actually filled a column leaves the record (the first non-empty of a field's alternatives; the
primary key when none had a value); unused fallbacks (LiteLLM ``user`` when ``end_user`` is set,
OTel ``gen_ai.response.model``) stay. A top-level key that collides with a key of the record's
own ``metadata`` object is kept as ``record.<key>``: neither overwrites the other.

OTel input is first flattened to one object per span (:mod:`tasks.ingest.sql_otel`). A plain
CSV file's physical lines are read from their split fields (:func:`csv_records_sql`).

Size: one concept (input keys to ``x_*`` columns and metadata) for its three inputs (JSON text,
CSV fields, typed Parquet columns), which share the field options and the used-key rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from tasks.ingest.log_formats import Shape
from tasks.ingest.readers import sql_str
from tasks.ingest.sql_otel import otel_docs_sql
from tasks.ingest.sql_paths import NestedPlan, json_path

__all__ = [
    "UseCaseRules",
    "csv_records_sql",
    "quote",
    "text_records_sql",
    "typed_records_sql",
    "use_case_sql",
]

COLLISION_PREFIX = "record."


@dataclass(frozen=True, kw_only=True)
class UseCaseRules:
    """Where a record's use case comes from when the record does not say.

    Args:
        default: the use case of every record that has none (``--use-case``).
        by_model_group: LiteLLM ``model_group`` -> use case.
        by_key_alias: LiteLLM API key alias (``metadata.user_api_key_alias``) -> use case.
        by_tag: request tag -> use case (the first tag that maps wins).
    """

    default: str | None = None
    by_model_group: Mapping[str, str] = field(default_factory=dict)
    by_key_alias: Mapping[str, str] = field(default_factory=dict)
    by_tag: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default is not None and not self.default.strip():
            raise ValueError("the default use case must not be blank")

    @classmethod
    def from_mapping(
        cls, value: Mapping[str, object], *, default: str | None = None
    ) -> UseCaseRules:
        """Rules from a config mapping ``{model_group: {...}, key_alias: {...}, tag: {...}}``.

        Args:
            value: the mapping (e.g. a JSON file's content).
            default: the default use case.

        Raises:
            ValueError: an unknown section or a non-string entry.
        """
        known = {"model_group", "key_alias", "tag", "default"}
        unknown = set(value) - known
        if unknown:
            raise ValueError(
                f"unknown use-case mapping sections {sorted(unknown)}; use {sorted(known)}"
            )
        sections: dict[str, dict[str, str]] = {}
        for name in ("model_group", "key_alias", "tag"):
            section = value.get(name) or {}
            if not isinstance(section, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in section.items()
            ):
                raise ValueError(f"use-case mapping {name!r} must map strings to strings")
            sections[name] = dict(section)
        fallback = value.get("default")
        return cls(
            default=default or (fallback if isinstance(fallback, str) else None),
            by_model_group=sections["model_group"],
            by_key_alias=sections["key_alias"],
            by_tag=sections["tag"],
        )


def quote(name: str) -> str:
    """A SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _case_map(expr: str, mapping: Mapping[str, str]) -> str | None:
    if not mapping:
        return None
    whens = " ".join(f"WHEN {sql_str(k)} THEN {sql_str(v)}" for k, v in sorted(mapping.items()))
    return f"CASE {expr} {whens} END"


def use_case_sql(shape: Shape, rules: UseCaseRules | None) -> str:
    """The use-case expression over ``_rec``: the record's own, then mappings, then default."""
    options = ["x_use_case" if "use_case" in shape.sources else "NULL::VARCHAR"]
    if rules is not None:
        if "aux_model_group" in shape.sources:
            options.append(_case_map("x_aux_model_group", rules.by_model_group) or "")
        if "aux_key_alias" in shape.sources:
            options.append(_case_map("x_aux_key_alias", rules.by_key_alias) or "")
        if "aux_tags" in shape.sources and rules.by_tag:
            tags = ", ".join(sql_str(t) for t in sorted(rules.by_tag))
            first = (
                "list_filter(CASE WHEN json_valid(x_aux_tags) THEN CAST(json_extract_string("
                f"x_aux_tags, '$[*]') AS VARCHAR[]) END, lambda t: t IN ({tags}))[1]"
            )
            options.append(_case_map(first, rules.by_tag) or "")
        if rules.default:
            options.append(sql_str(rules.default))
    options = [o for o in options if o]
    return options[0] if len(options) == 1 else f"coalesce({', '.join(options)})"


def _field_options(
    shape: Shape, base: Callable[[str], str], nested: NestedPlan | None = None
) -> dict[str, list[tuple[str, str | None]]]:
    """Per extracted name, its (SQL value, top-level key or None when nested) in order.

    ``base(key)`` is the text of a top-level key's value (NULL when absent). With ``nested``,
    the nested keys it covers are read from its parsed columns (one parse per top-level key)
    instead of one ``json_extract_string`` of the key's text per path.
    """
    result: dict[str, list[tuple[str, str | None]]] = {}
    for name, alternatives in shape.sources.items():
        options: list[tuple[str, str | None]] = []
        for path in alternatives:
            value = base(path[0])
            if len(path) == 1:
                options.append((f"nullif({value}, '')", path[0]))
            elif nested is not None and nested.covers(path):
                options.append((f"nullif({nested.value(path)}, '')", None))
            else:
                rest = sql_str(json_path(path[1:]))
                options.append(
                    (
                        f"CASE WHEN json_valid({value}) THEN nullif(json_extract_string({value},"
                        f" {rest}), '') END",
                        None,
                    )
                )
        result[name] = options
    return result


def _used_keys_sql(
    shape: Shape, options: dict[str, list[tuple[str, str | None]]]
) -> tuple[list[str], str]:
    """(keys always consumed, SQL list of the keys consumed by this record's fallbacks)."""
    static: list[str] = []
    dynamic: list[str] = []
    for name, opts in options.items():
        if name.startswith("aux_"):
            continue
        singles = [key for _, key in opts if key is not None]
        if not singles:
            continue
        if len(opts) == 1:
            static.append(singles[0])
            continue
        primary = opts[0][1]
        whens = " ".join(
            f"WHEN {expr} IS NOT NULL THEN {sql_str(key) if key else 'NULL'}" for expr, key in opts
        )
        dynamic.append(f"CASE {whens} ELSE {sql_str(primary) if primary else 'NULL'} END")
    if shape.metadata_key:
        static.append(shape.metadata_key)
    return static, "[" + ", ".join(dynamic) + "]"


def _record_metadata_sql(shape: Shape) -> str:
    """The record's own metadata object (JSON) or NULL; a non-object is wrapped."""
    if not shape.metadata_key:
        return "NULL::JSON"
    md_text = f"struct_extract(v, {sql_str(shape.metadata_key)})"
    md_json = f"json_extract(doc, {sql_str(json_path([shape.metadata_key]))})"
    return (
        f"CASE WHEN {md_text} IS NULL THEN NULL"
        f" WHEN json_type({md_json}) = 'OBJECT' THEN {md_json}"
        f" WHEN json_valid({md_text}) AND json_type({md_text}::JSON) = 'OBJECT'"
        f" THEN {md_text}::JSON"
        f" ELSE json_object('metadata', {md_json}) END"
    )


def merged_metadata_sql(md: str, pairs: str) -> str:
    """``md`` (a JSON object or NULL) plus ``pairs`` (``"k":v,...`` text) as one object text.

    Text-level: unlike ``json_merge_patch``, a null value is kept, not deleted.
    """
    inner = f"CAST({md} AS VARCHAR)[2:-2]"
    return (
        f"nullif('{{' || concat_ws(',', nullif({inner}, ''), nullif({pairs}, '')) || '}}', '{{}}')"
    )


def _columns(options: dict[str, list[tuple[str, str | None]]]) -> list[str]:
    """``x_<name>``: the first non-empty of a field's alternatives."""
    return [
        f"{opts[0][0] if len(opts) == 1 else 'coalesce(' + ', '.join(e for e, _ in opts) + ')'}"
        f" AS x_{name}"
        for name, opts in options.items()
    ]


def _extra_key_sql(key: str, consumed: str) -> str:
    """SQL: the key (``key``, SQL) is an extra key, for metadata: not one a column consumed
    (``consumed``, an SQL list) nor one of the record's used fallbacks (``dyn``)."""
    used = f"coalesce(list_contains(dyn, {key}), false)"
    return f"NOT list_contains({consumed}, {key}) AND NOT {used}"


def text_records_sql(shape: Shape, source: str = "_chunk") -> str:
    """``_rec`` from ``_chunk`` for JSON text records: x_* values as text, extras as JSON.

    Args:
        shape: the log shape.
        source: the table of lines (another name for a part of the chunk; not for spans).

    Returns:
        A SELECT over ``_chunk`` (``__file, __file_no, line_no, raw, pre``).
    """
    keys = shape.top_level_keys()
    struct = sql_str(json.dumps(dict.fromkeys(keys, "VARCHAR")))
    if shape.name == "otel":
        docs = otel_docs_sql()
        values = f"CASE WHEN pre_reason IS NULL THEN json_transform(doc, {struct}) END"
    else:
        # one parse where json_valid and then json_transform took two: try() gives NULL
        # exactly where json_valid is false (or the line is the literal null)
        docs = (
            "SELECT __file, __file_no, line_no, 0 AS rec_no, raw, raw AS doc, parsed,"
            " CASE WHEN pre IS NOT NULL THEN pre WHEN parsed IS NULL"
            " OR NOT regexp_matches(raw, '^\\s*\\{') THEN 'malformed_json' END AS pre_reason,"
            " NULL AS pre_detail FROM (SELECT *, CASE WHEN pre IS NULL"
            f" THEN try(json_transform(raw, {struct})) END AS parsed"
            f" FROM {source} WHERE regexp_matches(raw, '\\S'))"
        )
        values = "CASE WHEN pre_reason IS NULL THEN parsed END"
    nested = NestedPlan([path for paths in shape.sources.values() for path in paths])
    parsed_nested = "".join(
        f", {column}" for column in nested.columns(lambda key: f"struct_extract(v, {sql_str(key)})")
    )
    options = _field_options(shape, lambda key: f"struct_extract(v, {sql_str(key)})", nested)
    static, dynamic = _used_keys_sql(shape, options)
    consumed = "[" + ", ".join(sql_str(k) for k in static) + "]"
    # the lambdas below read no wide column from outside (DuckDB copies what a lambda reads
    # from outside for every list element): the values of all keys come from one parse ('$.*',
    # in key order, duplicates and nulls included) instead of one json_extract of the line
    # per extra key; `dyn` (a few fallback keys) and `clash` (extra keys also in the record's
    # metadata, usually none) are short. A 15,000-line LiteLLM chunk: 1.95 -> 0.88 s.

    label = f"CASE WHEN list_contains(clash, p[1]) THEN '{COLLISION_PREFIX}' || p[1] ELSE p[1] END"
    # no CASE around the lambdas: DuckDB runs list lambdas under a CASE branch 2-3x slower
    # (a 60,000-line LiteLLM chunk's metadata 1.7 -> 0.5 s); lines without extra keys give the
    # lambdas NULL lists instead (and skip the '$.*' parse)
    some = "CASE WHEN len(ek) > 0 THEN {} END"
    pairs = (
        "array_to_string(list_transform(list_filter("
        f"list_zip({some.format('keys')}, json_extract({some.format('doc')}, '$.*')),"
        f" lambda p: {_extra_key_sql('p[1]', consumed)}),"
        f" lambda p: to_json({label}) || ':' || p[2]::VARCHAR), ',')"
    )
    return f"""
    SELECT __file, __file_no, line_no, rec_no, raw, pre_reason, pre_detail,
           {", ".join(_columns(options))},
           {merged_metadata_sql("md", pairs)} AS x_metadata
    FROM (
      SELECT *, list_intersect(ek, mk) AS clash
      FROM (
        SELECT *, CASE WHEN md IS NOT NULL THEN json_keys(md) END AS mk,
               list_filter(keys, lambda k: {_extra_key_sql("k", consumed)}) AS ek
        FROM (
            SELECT *, {_record_metadata_sql(shape)} AS md, {dynamic} AS dyn
            FROM (
              SELECT *{parsed_nested}
              FROM (
                SELECT *,
                       {values} AS v,
                       CASE WHEN pre_reason IS NULL THEN json_keys(doc) END AS keys
                FROM ({docs})
              )
            )
        )
      )
    )
    """


def csv_records_sql(shape: Shape, header: Sequence[str], source: str = "_chunk") -> str:
    """``_rec`` from ``_chunk`` holding a plain CSV file's physical lines (no quoting).

    The same records as :func:`text_records_sql` over the rows as JSON objects (an empty cell
    is an absent key), read from the split fields with no JSON text per row; the header is
    known, so which cell goes to metadata is decided per column, not per key of each row.
    Only non-blank rows with no pre-reason are records here, a row of the wrong width with the
    reason ``malformed_row`` (the split is not repeated to filter it); the caller sends every
    line that is not inserted (blank, malformed, invalid UTF-8) through the JSON path.

    Args:
        shape: the log shape (not ``otel``).
        header: the file's column names (distinct).
        source: the table of lines (another name for a part of the chunk).
    """
    index = {name: i + 1 for i, name in enumerate(header)}

    def base(key: str) -> str:
        return f"nullif(f[{index[key]}], '')" if key in index else "NULL::VARCHAR"

    options = _field_options(shape, base)
    static, _ = _used_keys_sql(shape, options)
    used_by: dict[str, list[str]] = {}  # a fallback key -> "this record's field used it"
    for name, opts in options.items():
        keys = [key for _, key in opts if key is not None]
        if name.startswith("aux_") or not keys or len(opts) == 1:
            continue
        whens = " ".join(
            f"WHEN {expr} IS NOT NULL THEN {sql_str(key) if key else 'NULL'}" for expr, key in opts
        )
        primary = sql_str(opts[0][1]) if opts[0][1] else "NULL"
        for key in keys:
            used_by.setdefault(key, []).append(
                f"coalesce((CASE {whens} ELSE {primary} END) = {sql_str(key)}, false)"
            )
    md = "NULL::JSON"
    if shape.metadata_key and shape.metadata_key in index:
        text = base(shape.metadata_key)
        md = (
            f"CASE WHEN {text} IS NULL THEN NULL WHEN json_valid({text})"
            f" AND json_type({text}::JSON) = 'OBJECT' THEN {text}::JSON"
            f" ELSE json_object('metadata', {text}) END"
        )
    pairs = []
    for key, i in index.items():
        if key in static:
            continue
        label = f"to_json({sql_str(key)})::VARCHAR"
        if md != "NULL::JSON":
            label = (
                f"CASE WHEN list_contains(mk, {sql_str(key)})"
                f" THEN to_json({sql_str(COLLISION_PREFIX + key)})::VARCHAR ELSE {label} END"
            )
        taken = " OR ".join(used_by.get(key, [])) or "false"
        pairs.append(
            f"CASE WHEN f[{i}] <> '' AND NOT ({taken})"
            f" THEN {label} || ':' || to_json(f[{i}])::VARCHAR END"
        )
    pair_text = f"concat_ws(',', {', '.join(pairs)})" if pairs else "NULL"
    return f"""
    SELECT __file, __file_no, line_no, 0 AS rec_no, NULL::VARCHAR AS raw,
           CASE WHEN len(f) <> {len(header)} THEN 'malformed_row' END AS pre_reason,
           NULL::VARCHAR AS pre_detail,
           {", ".join(_columns(options))}, {merged_metadata_sql("md", pair_text)} AS x_metadata
    FROM (
        SELECT *, CASE WHEN md IS NOT NULL THEN json_keys(md) END AS mk
        FROM (
            SELECT *, {md} AS md
            FROM (SELECT *, string_split(rtrim(raw, chr(13)), ',') AS f FROM {source}
                  WHERE pre IS NULL AND regexp_matches(raw, '[^\\s,]'))
        )
    )
    """


def _is_text(col_type: pa.DataType) -> bool:
    """A string column of any Arrow layout (``large_string``: Polars' default)."""
    return bool(
        pa.types.is_string(col_type)
        or pa.types.is_large_string(col_type)
        or pa.types.is_string_view(col_type)
    )


def _json_text(schema: pa.Schema, name: str) -> str:
    """SQL of a typed column's JSON text (a string column is taken as JSON text already)."""
    col = quote(name)
    return col if _is_text(schema.field(name).type) else f"to_json({col})::VARCHAR"


def _typed_columns(
    shape: Shape, schema: pa.Schema, names: list[str], nested: NestedPlan
) -> tuple[list[str], str]:
    """x_* expressions over a typed chunk's columns, and the timestamp mode."""
    stringly = bool(shape.exprs)  # shape expressions work on text
    columns = []
    ts_mode = "text"
    for name, alternatives in shape.sources.items():
        options = []
        for path in alternatives:
            if path[0] not in names:
                continue
            col = quote(path[0])
            col_type = schema.field(path[0]).type
            if len(path) > 1 and nested.covers(path):
                options.append(nested.value(path))
            elif len(path) > 1:
                text = _json_text(schema, path[0])
                options.append(
                    f"CASE WHEN json_valid({text}) THEN json_extract_string({text},"
                    f" {sql_str(json_path(path[1:]))}) END"
                )
            elif name == "timestamp" and pa.types.is_timestamp(col_type):
                ts_mode = "tz" if col_type.tz else "naive"
                options.append(col)
            elif stringly or _is_text(col_type):
                options.append(f"nullif(CAST({col} AS VARCHAR), '')")
            else:
                options.append(col)
        expr = (
            "NULL::VARCHAR"
            if not options
            else options[0]
            if len(options) == 1
            else f"coalesce({', '.join(options)})"
        )
        columns.append(f"{expr} AS x_{name}")
    return columns, ts_mode


def typed_records_sql(shape: Shape, schema: pa.Schema) -> tuple[str, str]:
    """``_rec`` from a typed (Parquet) ``_chunk``.

    Columns that are the only source of a field leave the record; every other column (fallbacks
    included, even when used) is kept in metadata, nulls as null.

    Args:
        shape: the log shape.
        schema: the chunk's Arrow schema.

    Returns:
        (SELECT over ``_chunk``, timestamp mode ``text`` | ``tz`` | ``naive``).
    """
    names = [n for n in schema.names if n not in ("__line_no", "__file", "__file_no")]
    nested = NestedPlan([p for paths in shape.sources.values() for p in paths if p[0] in names])
    columns, ts_mode = _typed_columns(shape, schema, names, nested)
    parsed_nested = "".join(
        f", {column}" for column in nested.columns(lambda key: _json_text(schema, key))
    )
    consumed = {
        alts[0][0]
        for name, alts in shape.sources.items()
        if not name.startswith("aux_") and len(alts[0]) == 1
    }
    if shape.metadata_key:
        consumed.add(shape.metadata_key)
    extra = [n for n in names if n not in consumed]
    md_key = shape.metadata_key
    record_md = "NULL::JSON"
    if md_key and md_key in names:
        col = quote(md_key)
        record_md = (
            f"CASE WHEN {col} IS NULL OR {col} = '' THEN NULL WHEN json_valid({col})"
            f" AND json_type({col}::JSON) = 'OBJECT' THEN {col}::JSON"
            f" ELSE json_object('metadata', {col}) END"
            if _is_text(schema.field(md_key).type)
            else f"to_json({col})"
        )
    label = "CASE WHEN list_contains(mk, {k}) THEN {r} ELSE {p} END"
    pairs = (
        " || ',' || ".join(
            label.format(
                k=sql_str(n),
                r=sql_str(json.dumps(COLLISION_PREFIX + n) + ":"),
                p=sql_str(json.dumps(n) + ":"),
            )
            + f" || coalesce(to_json({quote(n)})::VARCHAR, 'null')"
            for n in extra
        )
        or "NULL"
    )
    sql = f"""
    SELECT __file, __file_no, __line_no AS line_no, 0 AS rec_no, NULL::VARCHAR AS raw,
           NULL::VARCHAR AS pre_reason, NULL::VARCHAR AS pre_detail,
           {", ".join(columns)}, {merged_metadata_sql("md", pairs)} AS x_metadata
    FROM (SELECT *, CASE WHEN md IS NOT NULL THEN json_keys(md) END AS mk
          FROM (SELECT *, {record_md} AS md{parsed_nested} FROM _chunk))
    """
    return sql, ts_mode
