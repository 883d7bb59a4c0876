"""Who may write: named principals with roles, in a tokens file only its owner can read.

There is no default secret. ``llmopt registry init`` generates a token per principal into
``<LLMOPT_HOME>/var/registry/tokens.toml`` (or ``LLMOPT_REGISTRY_TOKENS_FILE``) with mode 0600
and prints where; until that file names at least one principal every write is refused with one
line saying so. The file::

    [principals."alice"]
    token = "..."                      # 43 url-safe characters from secrets.token_urlsafe(32)
    roles = ["approve"]

Roles: ``propose`` (publish a candidate), ``approve`` (approve or reject a candidate),
``promote`` (promote and roll back). The HTTP API records the principal a token belongs to as the
actor, never a name the caller claims; the CLI does the same with ``LLMOPT_REGISTRY_TOKEN`` or the
principal it is told to act as (reading the 0600 file is the proof). Standard library only.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tasks.core.settings import Settings
from tasks.registry.errors import (
    PermissionDeniedError,
    RegistryError,
    TokensNotConfiguredError,
)

__all__ = [
    "ROLES",
    "Principal",
    "TokenBook",
    "TokensFileError",
    "add_principal",
    "load_tokens",
    "resolve_principal",
    "tokens_path",
]

ROLES = ("propose", "approve", "promote")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$")
NOT_CONFIGURED = (
    "writes are refused: no registry write token is configured (run `llmopt registry init`)"
)


class TokensFileError(RegistryError):
    """The tokens file is unreadable, malformed, or readable by other users."""


@dataclass(frozen=True, kw_only=True)
class Principal:
    """A named writer and the roles it holds."""

    name: str
    roles: frozenset[str]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise TokensFileError(f"principal name must match {_NAME.pattern}, got {self.name!r}")
        unknown = set(self.roles) - set(ROLES)
        if unknown:
            raise TokensFileError(f"principal {self.name}: unknown role(s) {sorted(unknown)}")

    def require(self, role: str) -> None:
        """Raise unless this principal holds ``role``.

        Args:
            role: one of :data:`ROLES`.

        Raises:
            PermissionDeniedError: naming the principal and the missing role.
        """
        if role not in self.roles:
            raise PermissionDeniedError(f"principal {self.name!r} lacks the {role!r} role")


@dataclass(frozen=True, kw_only=True)
class TokenBook:
    """Tokens -> principals; empty when nothing is configured (then every write is refused)."""

    path: Path | None = None
    tokens: Mapping[str, Principal] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        """True once at least one principal has a token."""
        return bool(self.tokens)

    def principal(self, name: str) -> Principal | None:
        """The principal called ``name``, if any."""
        return next((p for p in self.tokens.values() if p.name == name), None)

    def token_of(self, name: str) -> str | None:
        """The token of principal ``name`` (the CLI acting as it), if any."""
        return next((t for t, p in self.tokens.items() if p.name == name), None)

    def authenticate(self, token: str) -> Principal:
        """The principal ``token`` belongs to (compared in constant time).

        Args:
            token: the presented bearer token.

        Returns:
            Its principal.

        Raises:
            TokensNotConfiguredError: no tokens at all.
            PermissionDeniedError: the token matches no principal.
        """
        if not self.configured:
            raise TokensNotConfiguredError(NOT_CONFIGURED)
        supplied = token.encode("utf-8", "surrogateescape")
        found: Principal | None = None
        for candidate, principal in self.tokens.items():
            if hmac.compare_digest(candidate.encode("utf-8"), supplied):
                found = principal
        if found is None:
            raise PermissionDeniedError("the token matches no registry principal")
        return found


def tokens_path(settings: Settings) -> Path:
    """Where the tokens file lives.

    Args:
        settings: resolved settings (``LLMOPT_REGISTRY_TOKENS_FILE`` overrides the default).

    Returns:
        ``<home>/var/registry/tokens.toml`` unless overridden.
    """
    override = settings.extra.get("LLMOPT_REGISTRY_TOKENS_FILE")
    return Path(override) if override else settings.home / "var" / "registry" / "tokens.toml"


def _parse(path: Path, raw: Mapping[str, object]) -> dict[str, Principal]:
    section = raw.get("principals", {})
    if not isinstance(section, Mapping) or set(raw) - {"principals"}:
        raise TokensFileError(f"{path}: expected only [principals.NAME] tables")
    tokens: dict[str, Principal] = {}
    for name, entry in section.items():
        if not isinstance(entry, Mapping) or set(entry) != {"token", "roles"}:
            raise TokensFileError(f"{path}: principal {name!r} needs exactly token and roles")
        token, roles = entry["token"], entry["roles"]
        if not isinstance(token, str) or len(token) < 24 or token in tokens:
            raise TokensFileError(f"{path}: principal {name!r}: token too short or reused")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise TokensFileError(f"{path}: principal {name!r}: roles must be a list of names")
        tokens[token] = Principal(name=str(name), roles=frozenset(roles))
    return tokens


def load_tokens(path: Path) -> TokenBook:
    """Read a tokens file; a missing file is an empty (write-refusing) book.

    Args:
        path: the tokens file.

    Returns:
        The book.

    Raises:
        TokensFileError: malformed, or readable by group/others (it holds secrets).
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return TokenBook(path=path)
    if mode & 0o077:
        raise TokensFileError(f"{path} is readable by other users: chmod 600 {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokensFileError(f"cannot read tokens file {path}: {exc}") from exc
    return TokenBook(path=path, tokens=_parse(path, raw))


def _render(principals: Iterable[tuple[str, Principal]]) -> str:
    lines = ["# llmopt registry write tokens: keep private (mode 0600). Roles: " + ", ".join(ROLES)]
    for token, p in principals:
        roles = ", ".join(f'"{r}"' for r in ROLES if r in p.roles)
        lines += ["", f'[principals."{p.name}"]', f'token = "{token}"', f"roles = [{roles}]"]
    return "\n".join(lines) + "\n"


def add_principal(
    path: Path, name: str, roles: Iterable[str], *, replace: bool = False
) -> Principal:
    """Generate a token for a new principal and write the tokens file with mode 0600.

    Args:
        path: the tokens file (created with its folder if missing).
        name: the principal's name (e.g. a person's login, or ``nightly-flow``).
        roles: a subset of :data:`ROLES`.
        replace: give an existing principal a new token and these roles.

    Returns:
        The principal (its token is in the file, never printed).

    Raises:
        TokensFileError: the principal exists (without ``replace``) or the name/roles are bad.
    """
    principal = Principal(name=name, roles=frozenset(roles))
    if not principal.roles:
        raise TokensFileError("give the principal at least one role")
    book = load_tokens(path)
    if book.principal(name) is not None and not replace:
        raise TokensFileError(f"principal {name!r} exists in {path} (use --replace)")
    kept = [(t, p) for t, p in book.tokens.items() if p.name != name]
    text = _render([*kept, (secrets.token_urlsafe(32), principal)])
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return principal


def resolve_principal(book: TokenBook, *, token: str = "", name: str | None = None) -> Principal:
    """Who a command-line write acts as.

    Args:
        book: the tokens file's principals.
        token: ``LLMOPT_REGISTRY_TOKEN`` if set (wins: it is what another user would present).
        name: ``--as NAME``: a principal in the file (being able to read the 0600 file is the
            proof); without it the only principal in the file, if there is exactly one.

    Returns:
        The principal.

    Raises:
        TokensNotConfiguredError: no tokens file (one line, naming ``llmopt registry init``).
        PermissionDeniedError: the token or name matches nobody, or the choice is ambiguous.
    """
    if not book.configured:
        raise TokensNotConfiguredError(NOT_CONFIGURED)
    if token:
        return book.authenticate(token)
    if name is not None:
        found = book.principal(name)
        if found is None:
            raise PermissionDeniedError(f"no principal {name!r} in {book.path}")
        return found
    names = sorted({p.name for p in book.tokens.values()})
    if len(names) == 1:
        return next(iter(book.tokens.values()))
    raise PermissionDeniedError(f"say who acts: --as one of {names} (or set LLMOPT_REGISTRY_TOKEN)")
