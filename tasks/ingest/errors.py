"""The ingestion's expected failures, all under :class:`tasks.core.errors.LlmoptError`.

The CLI prints each as one line (exit 1); bad *data* never raises, it is quarantined.
"""

from __future__ import annotations

from tasks.core.errors import LlmoptError

__all__ = ["IngestError", "IngestFileError", "SourceError"]


class IngestError(LlmoptError):
    """A path cannot be ingested at all (missing, unsupported); the message names it."""


class IngestFileError(LlmoptError):
    """A file cannot be read to the end; the message names the file and its last good line."""


class SourceError(IngestError):
    """A pull source (a LiteLLM PostgreSQL database) cannot be read; the message says why."""
