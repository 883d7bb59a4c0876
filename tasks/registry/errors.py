"""The registry's expected failures, all under :class:`tasks.core.errors.LlmoptError`.

Standard library only: the serving client imports these without SQLAlchemy. The HTTP API maps
each class to one status code (see ``tasks.registry.app``), the CLI prints it as one line.
"""

from __future__ import annotations

from tasks.core.errors import LlmoptError

__all__ = [
    "FourEyesError",
    "InvalidTransitionError",
    "NotFoundError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "RegistryError",
    "StaleVersionError",
    "TokensNotConfiguredError",
]


class RegistryError(LlmoptError):
    """Base of the registry's errors."""


class StaleVersionError(RegistryError):
    """The caller acted on an outdated view (another writer got there first); re-read and retry."""


class PreconditionFailedError(StaleVersionError):
    """Production is no longer the version the caller said it expected (HTTP 409)."""


class NotFoundError(RegistryError):
    """No such use case, version or alias."""


class InvalidTransitionError(RegistryError):
    """The lifecycle forbids this move (e.g. promoting a candidate that was never approved)."""


class FourEyesError(RegistryError):
    """The use case's policy needs a second person: the approver proposed it, or is automated."""


class PermissionDeniedError(RegistryError):
    """The authenticated principal lacks the role this action needs."""


class TokensNotConfiguredError(RegistryError):
    """No write token is configured: writes are refused until ``llmopt registry init``."""
