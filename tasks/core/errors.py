"""One root exception, so callers (the CLI, the flow) catch expected failures in one place.

Every error the platform raises on purpose (bad configuration, bad input, a registry refusal, a
held lock) derives from :class:`LlmoptError`; the CLI prints it as one line and exits 1. Where an
error is also a :class:`ValueError` or :class:`RuntimeError` by nature, it keeps that base too, so
existing ``except ValueError`` callers still work.

    >>> from tasks.core.errors import LlmoptError
    >>> class Example(LlmoptError, ValueError): ...
    >>> isinstance(Example("x"), ValueError) and isinstance(Example("x"), LlmoptError)
    True
"""

from __future__ import annotations

__all__ = ["LlmoptError"]


class LlmoptError(Exception):
    """Root of every expected failure: printed as one line by the CLI, never a traceback."""
