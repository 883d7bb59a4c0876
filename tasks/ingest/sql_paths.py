"""Key paths into JSON records as SQL: JSONPaths, and nested keys parsed once per record.

A shape names the keys it reads as paths (``("metadata", "usage_object", "cache_read")``);
:func:`json_path` writes one as a JSONPath and :class:`NestedPlan` reads all the nested ones
of a record with one ``json_transform`` per top-level key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from tasks.ingest.readers import sql_str

__all__ = ["NestedPlan", "json_path"]


def json_path(keys: Sequence[str]) -> str:
    """A JSONPath for nested keys (digits index arrays).

    Args:
        keys: the keys below the document's root.

    Returns:
        The path, e.g. ``$."usage"."details"[0]``.
    """
    parts = ["$"]
    for key in keys:
        parts.append(f"[{key}]" if key.isdigit() else "." + json.dumps(key))
    return "".join(parts)


class NestedPlan:
    """The nested keys a shape reads, parsed once per record into one struct per top-level key.

    ``json_transform`` of a top-level value (e.g. LiteLLM's ``metadata``) to a struct of every
    nested key the shape reads replaces one ``json_valid`` and one ``json_extract_string`` of
    the whole value per path (22 paths for LiteLLM: 44 parses of ``metadata`` per line). The
    values are the same: ``json_transform`` is not strict (a key of the wrong type is NULL, as a
    path through it is), and invalid JSON gives NULL under ``try``. An array index in a path
    reads the array as JSON and takes the rest with ``json_extract_string``, as does a key that
    is read both whole and below.

    Args:
        paths: key paths, top-level key first; paths of one key (and paths whose second
            key is an array index) are left to the caller.

    >>> plan = NestedPlan([("metadata", "status"), ("metadata", "tags", "0"), ("tags", "0")])
    >>> print(plan.columns(lambda key: f"v.{key}")[0])  # doctest: +NORMALIZE_WHITESPACE
    try(json_transform(v.metadata,
        '{"status": "VARCHAR", "tags": "JSON"}')) AS __nested_0
    >>> plan.value(("metadata", "tags", "0"))
    "json_extract_string(struct_extract(__nested_0, 'tags'), '$[0]')"
    >>> plan.covers(("tags", "0"))
    False
    """

    def __init__(self, paths: Sequence[Sequence[str]]) -> None:
        self._trees: dict[str, dict[str, object]] = {}
        for path in paths:
            head = self._head(path)
            if not head:
                continue  # an array index right below the top: the old per-path read
            node = self._trees.setdefault(path[0], {})
            for key in head[:-1]:
                child = node.setdefault(key, {})
                if not isinstance(child, dict):  # read whole too: read as JSON, below by path
                    node[key] = "JSON"
                    break
                node = child
            else:
                leaf = head[-1]
                whole = "VARCHAR" if len(head) == len(path) - 1 else "JSON"
                known = node.get(leaf)
                node[leaf] = whole if known in (None, whole) else "JSON"
        self._names = {top: f"__nested_{i}" for i, top in enumerate(self._trees)}

    @staticmethod
    def _head(path: Sequence[str]) -> tuple[str, ...]:
        keys = tuple(path[1:])
        cut = next((i for i, key in enumerate(keys) if key.isdigit()), len(keys))
        return keys[:cut]

    def covers(self, path: Sequence[str]) -> bool:
        """Whether ``path`` (top-level key first) is read from a parsed column.

        Args:
            path: a key path, top-level key first.
        """
        return len(path) > 1 and path[0] in self._trees and bool(self._head(path))

    def columns(self, text: Callable[[str], str]) -> list[str]:
        """The parsed columns, one per top-level key, as ``SELECT`` items.

        Args:
            text: SQL of a top-level key's JSON text, given the key.
        """
        return [
            f"try(json_transform({text(top)}, {sql_str(json.dumps(tree))})) AS {self._names[top]}"
            for top, tree in self._trees.items()
        ]

    def value(self, path: Sequence[str]) -> str:
        """SQL of the text of ``path``, from its parsed column.

        Args:
            path: a key path that :meth:`covers`.
        """
        expr = self._names[path[0]]
        node: object = self._trees[path[0]]
        keys = tuple(path[1:])
        for depth, key in enumerate(keys):
            assert isinstance(node, dict)
            expr = f"struct_extract({expr}, {sql_str(key)})"
            node = node[key]
            if node == "JSON":
                return f"json_extract_string({expr}, {sql_str(json_path(keys[depth + 1 :]))})"
            if node == "VARCHAR":
                return expr
        raise AssertionError(f"{path} is not a leaf")  # pragma: no cover
