"""One entry point for any log source: files / globs / folders, or a LiteLLM PostgreSQL URL.

The nightly flow's ``source`` parameter comes here: ``ingest_source(settings, "logs/*.jsonl")``
or ``ingest_source(settings, "postgresql://user@host/litellm")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasks.core.settings import Settings
from tasks.ingest.pipeline import ingest_paths
from tasks.ingest.report import IngestReport

__all__ = ["ingest_source", "is_database_url"]

_URL_PREFIXES = ("postgresql://", "postgres://", "postgresql+psycopg://", "postgresql+psycopg2://")


def is_database_url(source: str) -> bool:
    """Whether ``source`` names a PostgreSQL database rather than files.

    Args:
        source: a path, glob or URL.
    """
    return source.strip().lower().startswith(_URL_PREFIXES)


def ingest_source(
    settings: Settings | None, source: str | Sequence[str | Path], **options: Any
) -> IngestReport:
    """Ingest from files (paths, globs, folders) or pull from a LiteLLM PostgreSQL database.

    Args:
        settings: where the warehouse is.
        source: a path / glob / folder, a list of them, or a ``postgresql://`` URL whose
            ``LiteLLM_SpendLogs`` table is pulled incrementally.
        **options: keyword arguments of :func:`tasks.ingest.pipeline.ingest_paths` (files) or
            :func:`tasks.ingest.postgres.pull_litellm` (a URL).

    Returns:
        The ingest report (a pull reports one pseudo-file per run).

    Raises:
        IngestError: bad paths; SourceError: the database cannot be read.
    """
    if isinstance(source, str) and is_database_url(source):
        from tasks.ingest.postgres import pull_litellm  # psycopg is needed only for a pull

        return pull_litellm(source, settings=settings, **options)
    paths = [source] if isinstance(source, str | Path) else list(source)
    return ingest_paths(paths, settings=settings, **options)
