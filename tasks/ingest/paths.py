"""Which files to ingest and what they are: globs and folders, formats, shape sniffing, hashes.

Everything here looks at names and the first 64 KiB of a file; rows are read by
:mod:`tasks.ingest.readers`.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from tasks.ingest.errors import IngestError
from tasks.ingest.log_formats import CANONICAL_FIELDS, SHAPE_BY_NAME, detect_shape

__all__ = [
    "BOM",
    "SUPPORTED_SUFFIXES",
    "TruncatedInput",
    "column_names",
    "csv_header_of",
    "decimal_points",
    "detect_file_shape",
    "file_format",
    "head",
    "iter_blocks",
    "resolve_paths",
    "sha256_with_prefix",
    "sniff_json",
]

SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
CSV_DELIMITERS = (",", ";", "\t", "|")  # Excel writes ";" where "," is the decimal mark
BOM = b"\xef\xbb\xbf"
BLOCK_BYTES = 16 * 1024 * 1024


class TruncatedInput(Exception):
    """Raised by :func:`iter_blocks` after the last good byte was yielded (internal)."""


def resolve_paths(patterns: Sequence[str | Path]) -> list[Path]:
    """Expand files, globs (``**`` allowed) and folders (recursively) into supported files.

    Args:
        patterns: file names, glob patterns or folders.

    Returns:
        The resolved files, sorted, each once.

    Raises:
        IngestError: a name that does not exist, a glob that matches nothing, or an unsupported
            file type named explicitly.
    """
    found: dict[str, Path] = {}
    for pattern in patterns:
        for match in _matches(str(pattern)):
            if match.is_dir():
                for candidate in _walk(match):
                    found[str(candidate)] = candidate
            elif match.is_file():
                if file_format(match) is None:
                    raise IngestError(
                        f"{match}: unsupported file type (use {', '.join(SUPPORTED_SUFFIXES)},"
                        " optionally .gz)"
                    )
                found[str(match.resolve())] = match.resolve()
    return [found[key] for key in sorted(found)]


def _matches(text: str) -> list[Path]:
    if not glob.has_magic(text):
        path = Path(text)
        if not path.exists():
            raise IngestError(f"no such file or directory: {text}")
        return [path]
    matches = [Path(p) for p in glob.glob(text, recursive=True)]
    if not matches:
        raise IngestError(f"no file matches {text}")
    return matches


def _walk(folder: Path) -> Iterator[Path]:
    for root, _, names in os.walk(folder):
        for name in names:
            candidate = Path(root) / name
            if file_format(candidate) is not None:
                yield candidate.resolve()


def file_format(path: Path) -> tuple[str, bool] | None:
    """(format, gzip-compressed) from the file name, or None when unsupported.

    Args:
        path: a file name.

    Returns:
        ``("jsonl" | "json" | "csv" | "parquet", compressed)`` or None.
    """
    name = path.name.lower()
    compressed = name.endswith(".gz")
    if compressed:
        name = name[:-3]
    for suffix in SUPPORTED_SUFFIXES:
        if name.endswith(suffix):
            fmt = {".ndjson": "jsonl", ".jsonl": "jsonl", ".tsv": "csv"}.get(suffix, suffix[1:])
            return fmt, compressed
    return None


def iter_blocks(path: Path, compressed: bool, offset: int = 0) -> Iterator[bytes]:
    """The file's (decompressed) bytes in blocks, from byte ``offset`` of a plain file.

    A gzip stream is inflated here (``zlib``, multi-member aware) rather than by ``gzip.open``,
    so every byte inflated before a truncation or a corrupt block is yielded first; then
    :class:`TruncatedInput` is raised. The caller names the true last good line.

    Args:
        path: the file.
        compressed: whether it is gzip.
        offset: where to start (plain files only: an appended file's new bytes).
    """
    with open(path, "rb") as handle:
        if not compressed:
            handle.seek(offset)
            yield from iter(lambda: handle.read(BLOCK_BYTES), b"")
            return
        inflater = zlib.decompressobj(wbits=31)
        fed = False  # the current member has received input
        for read in iter(lambda: handle.read(BLOCK_BYTES // 4), b""):
            data = read
            while data:
                fed = True
                try:
                    out = inflater.decompress(data)
                except zlib.error as exc:
                    raise TruncatedInput(f"corrupt compressed data ({exc})") from exc
                if out:
                    yield out
                data = b""
                if inflater.eof:
                    data, fed = inflater.unused_data, False
                    inflater = zlib.decompressobj(wbits=31)
        if fed and not inflater.eof:
            tail = inflater.flush()
            if tail:
                yield tail
            raise TruncatedInput("truncated compressed data (the gzip stream ends early)")


def head(path: Path, compressed: bool, size: int = 65536) -> bytes:
    """The first ``size`` bytes (decompressed, without a UTF-8 BOM); empty if unreadable.

    Args:
        path: the file.
        compressed: whether it is gzip.
        size: how many bytes.
    """
    data = b""
    try:
        for block in iter_blocks(path, compressed):
            data += block
            if len(data) >= size:
                break
    except TruncatedInput:
        pass  # the full read reports the problem with a line number
    data = data[:size]
    return data[len(BOM) :] if data.startswith(BOM) else data


_WRAPPED = re.compile(rb'\{\s*"data"\s*:\s*\[')


def sniff_json(path: Path, compressed: bool) -> str:
    """``jsonl`` when the first line is a whole JSON value, else ``array`` / ``document``;
    ``wrapped`` for one object whose ``data`` key holds the records (an API page, e.g.
    LiteLLM's ``{"data": [...], "total": ...}``).

    Args:
        path: a ``.json`` file.
        compressed: whether it is gzip.
    """
    start = head(path, compressed).lstrip()
    if start.startswith(b"["):
        return "array"
    if _WRAPPED.match(start):
        return "wrapped"
    first = start.split(b"\n", 1)[0]
    try:
        json.loads(first)
    except ValueError:
        return "document" if b"\n" in start or len(start) < 65536 else "jsonl"
    return "jsonl"


def detect_file_shape(path: Path, fmt: str, compressed: bool) -> str:
    """The log shape of a file from its keys / column names (``canonical`` when unsure).

    Args:
        path: the file.
        fmt: its format (``file_format``).
        compressed: whether it is gzip.
    """
    if fmt == "parquet":
        import pyarrow as pa  # only Parquet needs it here
        import pyarrow.parquet as pq

        try:
            return detect_shape(pq.read_schema(path).names)
        except (OSError, pa.ArrowException):
            return "canonical"  # the read reports the problem
    start = head(path, compressed)
    if fmt == "csv":
        lines = start.decode("utf-8", "replace").splitlines()
        return detect_shape(csv_header_of(lines[0])[0]) if lines else "canonical"
    return _detect_text_shape(start)


def csv_header_of(first_line: str) -> tuple[list[str], str]:
    r"""A CSV file's column names (stripped) and its delimiter, from its first line.

    The delimiter is the one of ``CSV_DELIMITERS`` that splits the header into the most
    names (a comma on a tie): Excel writes ``;`` in locales with a decimal comma.

    Args:
        first_line: the file's first line (a BOM already removed).

    Returns:
        (column names as :func:`column_names` gives them, delimiter).

    >>> csv_header_of("request_id;model;input_tokens\r")
    (['request_id', 'model', 'input_tokens'], ';')
    >>> csv_header_of(' request_id , "a;b" ,model')
    (['request_id', 'a;b', 'model'], ',')
    >>> csv_header_of("request_id\tmodel")
    (['request_id', 'model'], '\t')
    """
    line = first_line.rstrip("\r\n")
    best: tuple[list[str], str] = ([], ",")
    for delimiter in CSV_DELIMITERS:
        names = next(csv.reader([line], delimiter=delimiter, skipinitialspace=True), [])
        if len(names) > len(best[0]):
            best = (names, delimiter)
    return column_names(best[0]), best[1]


_DECIMAL_COMMA = re.compile(r"-?[0-9]*,[0-9]+")
_NUMERIC = {name for name, kind, _ in CANONICAL_FIELDS if kind in ("int", "double")}
# the top-level keys that fill a numeric field in some shape
_NUMERIC_KEYS = frozenset(
    path[0]
    for shape in SHAPE_BY_NAME.values()
    for name, paths in shape.sources.items()
    if name in _NUMERIC
    for path in paths
    if len(path) == 1
)


def decimal_points(header: Sequence[str], delimiter: str, row: list[str]) -> list[str]:
    """A ``;``-separated row with its numeric fields' decimal commas as points.

    Excel writes ``;`` between fields where the decimal mark is a comma, and then writes
    ``0,82`` and ``350,5``: read as they stand, every such row was ``bad_type``. Only a plain
    decimal (no thousands mark) in a field that some shape reads as a number changes; text
    fields keep their commas, and a comma-separated file is left alone (there a comma in a
    number is a thousands mark).

    Args:
        header: the row's column names (:func:`column_names`).
        delimiter: the file's delimiter.
        row: the row's cells.

    >>> decimal_points(["quality", "latency_ms", "prompt_id"], ";", ["0,82", "1.234,5", "3,5"])
    ['0.82', '1.234,5', '3,5']
    >>> decimal_points(["quality"], ",", ["0,82"])
    ['0,82']
    """
    if delimiter != ";":
        return row
    return [
        cell.replace(",", ".") if name in _NUMERIC_KEYS and _DECIMAL_COMMA.fullmatch(cell) else cell
        for name, cell in zip(header, row, strict=False)
    ] + row[len(header) :]


_KNOWN_KEYS = {
    key.lower(): key for shape in SHAPE_BY_NAME.values() for key in shape.top_level_keys()
}


def column_names(names: Sequence[str]) -> list[str]:
    """A CSV header's names stripped, and a field the shapes read in another case spelled as
    they spell it (Excel headers: ``Request_ID`` is ``request_id``), unless that spelling is
    taken by another column.

    Args:
        names: the header's names as read.

    Returns:
        The names to key the records by, in the header's order.

    >>> column_names([" Request_ID", "MODEL ", "Team", "starttime", "status", "Status"])
    ['request_id', 'model', 'Team', 'startTime', 'status', 'Status']
    """
    stripped = [name.strip() for name in names]
    wanted = [_KNOWN_KEYS.get(name.lower(), name) for name in stripped]
    taken = set(stripped)
    counts = {name: wanted.count(name) for name in wanted}
    return [
        new if new == old or (new not in taken and counts[new] == 1) else old
        for old, new in zip(stripped, wanted, strict=True)
    ]


def _detect_text_shape(start: bytes) -> str:
    if b'"resourceSpans"' in start:
        return "otel"
    keys: set[str] = set()
    for line in start.split(b"\n")[:50]:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("data"), list):  # an API page
            keys.update(k for item in value["data"] if isinstance(item, dict) for k in item)
        elif isinstance(value, dict):
            keys.update(value)
    if keys:
        return detect_shape(keys)
    text = start.decode("utf-8", "replace")
    if '"startTime"' in text and ('"spend"' in text or '"prompt_tokens"' in text):
        return "litellm"
    if '"gen_ai.' in text and ('"context"' in text or '"attributes"' in text):
        return "otel"
    return "canonical"


def sha256_with_prefix(path: Path, prefix: int | None = None) -> tuple[str, str | None]:
    """The sha256 of the file's bytes, and of its first ``prefix`` bytes (one read).

    Args:
        path: the file (as stored: compressed bytes for ``.gz``).
        prefix: a byte count whose digest is wanted too (an appended file's old part).

    Returns:
        (full digest, prefix digest or None when ``prefix`` is None or beyond the end).
    """
    digest = hashlib.sha256()
    prefix_digest: str | None = None
    seen = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK_BYTES), b""):
            if prefix is not None and prefix_digest is None and seen + len(block) >= prefix:
                digest.update(block[: prefix - seen])
                prefix_digest = digest.hexdigest()
                digest.update(block[prefix - seen :])
            else:
                digest.update(block)
            seen += len(block)
    return digest.hexdigest(), prefix_digest
