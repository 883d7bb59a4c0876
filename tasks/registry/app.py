"""Request routing of the registry API, independent of the socket server (see ``api``).

Reads are open; writes need a bearer token that names a principal with the action's role
(:mod:`tasks.registry.auth`), and that principal is what the audit records. Every refusal is a
4xx with a one-line JSON error (``{"error": code, "detail": ...}``) and changes nothing; only a
store that is down answers 503. Promote and rollback need a precondition: ``expected_production``
in the body or an ``If-Match`` ETag of the production document (409 when production moved, 428
when neither is given).

Rendered documents are cached per use case and invalidated by the store's per-use-case revision
(checked at most every ``refresh_interval`` seconds; writes through this API invalidate at once).
Cache entries only move forward, so loads finishing out of order never bring an old one back.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict
from typing import Any
from urllib.parse import unquote

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from tasks.registry.auth import Principal, TokenBook
from tasks.registry.errors import (
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    TokensNotConfiguredError,
)
from tasks.registry.model import (
    ConfigValidationError,
    RegistryConfig,
    canonical_json,
    validate_use_case,
)
from tasks.registry.responses import (
    JSON_TYPE,
    HTTPError,
    Response,
    error_response,
    etag_matches,
    etag_of,
    json_response,
)
from tasks.registry.store import RegistryStore

__all__ = ["HTTPError", "RegistryApp", "Response", "error_response"]

_ROLE_OF = {"publish": "propose", "approve": "approve", "reject": "approve"}
_ROLE_OF |= {"promote": "promote", "rollback": "promote"}


def _is_version(text: str) -> bool:
    """A plain ASCII version number of sane size (no '²', no 30-digit overflow)."""
    return text.isascii() and text.isdigit() and len(text) <= 9


class RegistryApp:
    """Routing, authorisation and the document cache.

    Args:
        store: the registry store.
        tokens: principals and their tokens (empty: every write refused).
        refresh_interval: how stale the revision check may be, in seconds.
    """

    def __init__(
        self, store: RegistryStore, *, tokens: TokenBook, refresh_interval: float = 0.25
    ) -> None:
        self.store, self.tokens, self.refresh_interval = store, tokens, refresh_interval
        self._lock = threading.Lock()
        self._revisions: dict[str, int] = {}
        self._revisions_at = -math.inf
        self._cache: dict[tuple[str, str], tuple[int, bytes, str]] = {}
        self.metrics = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "llmopt_registry_requests", "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"], registry=self.metrics,
        )  # fmt: skip
        self.latency = Histogram(
            "llmopt_registry_request_seconds", "Request handling time by endpoint", ["endpoint"],
            buckets=(0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0),
            registry=self.metrics,
        )  # fmt: skip
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.served_version = Gauge(
            "llmopt_registry_served_version", "Production version currently served per use case",
            ["use_case"], registry=self.metrics,
        )  # fmt: skip

    def record(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count and time one request (labelled children cached: ``labels()`` costs ~10 µs)."""
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(endpoint, method, str(status)),
                self.latency.labels(endpoint),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    # -- cache ----------------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Forget the revision check so the next read asks the store."""
        with self._lock:
            self._revisions_at = -math.inf

    def _revision(self, use_case: str) -> int:
        now = time.monotonic()
        if now - self._revisions_at > self.refresh_interval:
            with self._lock:
                if now - self._revisions_at > self.refresh_interval:
                    self._revisions = self.store.revisions()
                    self._revisions_at = time.monotonic()
        return self._revisions.get(use_case, 0)

    def _load(self, use_case: str, ref: str) -> tuple[int, bytes, str, int]:
        version, revision = self.store.get_with_revision(use_case, ref)
        body = canonical_json(version.to_document())
        return revision, body, etag_of(body), version.version

    def _document(self, use_case: str, ref: str) -> tuple[bytes, str]:
        key = (use_case, ref)
        cached = self._cache.get(key)
        if cached is not None and cached[0] >= self._revision(use_case):
            return cached[1], cached[2]
        revision, body, etag, number = self._load(use_case, ref)
        entry = (revision, body, etag)
        with self._lock:
            current = self._cache.get(key)
            if current is not None and current[0] > revision:
                entry = current  # a newer document was cached while we were loading
            else:
                self._cache[key] = entry
                if ref == "production":
                    self.served_version.labels(use_case=use_case).set(number)
        return entry[1], entry[2]

    # -- paths ----------------------------------------------------------------------------------

    @staticmethod
    def split_path(raw_path: str) -> list[str]:
        """Path segments, each percent-decoded once and refused if it could traverse."""
        path = raw_path.split("?", 1)[0].split("#", 1)[0]
        if not path.startswith("/"):
            raise HTTPError(400, "bad_path", "path must start with /")
        segments = []
        for raw in path.strip("/").split("/"):
            try:
                segment = unquote(raw, errors="strict") if "%" in raw else raw
            except UnicodeDecodeError:
                raise HTTPError(400, "bad_path", "path is not valid UTF-8") from None
            if segment in {"", ".", ".."} or "/" in segment or "\\" in segment or "\x00" in segment:
                raise HTTPError(400, "bad_path", f"invalid path segment {segment!r:.80}")
            segments.append(segment)
        return segments

    @staticmethod
    def _use_case(segment: str) -> str:
        try:
            return validate_use_case(segment)
        except ConfigValidationError as exc:
            raise HTTPError(400, "bad_use_case", str(exc)) from exc

    # -- reads ----------------------------------------------------------------------------------

    def route_get(self, raw_path: str, if_none_match: str | None) -> tuple[str, Response]:
        """Answer a GET (or HEAD).

        Args:
            raw_path: the request target as sent.
            if_none_match: the ``If-None-Match`` header.

        Returns:
            ``(endpoint label, response)``.
        """
        parts = self.split_path(raw_path) if raw_path not in {"/", ""} else []
        if parts in (["health"], ["healthz"]):
            try:
                count = len(self.store.revisions())
            except SQLAlchemyError as exc:  # the store is down: say so, do not crash the server
                return "health", json_response(503, {"status": "error", "detail": str(exc)[:200]})
            return "health", json_response(200, {"status": "ok", "use_cases": count})
        if parts == ["metrics"]:
            return "metrics", (200, generate_latest(self.metrics), CONTENT_TYPE_LATEST, {})
        if parts == ["v1", "use-cases"]:
            items = [
                {"use_case": use_case, "production_version": production}
                for use_case, production in self.store.production_versions().items()
            ]
            return "use_cases", json_response(200, {"use_cases": items})
        if len(parts) in {3, 4} and parts[:2] == ["v1", "configs"]:
            use_case = self._use_case(parts[2])
            if len(parts) == 4 and parts[3] == "history":
                entries = [asdict(e) for e in self.store.history(use_case)]
                if not entries:
                    raise HTTPError(404, "not_found", f"no history for {use_case!r}")
                return "history", json_response(200, {"use_case": use_case, "history": entries})
            ref = parts[3] if len(parts) == 4 else "production"
            if not (_is_version(ref) or ref in {"production", "candidate", "latest"}):
                raise HTTPError(400, "bad_ref", "version must be a number or an alias")
            endpoint = "config" if len(parts) == 3 else "config_version"
            body, etag = self._document(use_case, ref)
            headers = {"ETag": etag, "Cache-Control": "no-cache"}
            if etag_matches(if_none_match, etag):
                return endpoint, (304, b"", JSON_TYPE, headers)
            return endpoint, (200, body, JSON_TYPE, headers)
        raise HTTPError(404, "not_found", "no such endpoint")

    # -- writes ---------------------------------------------------------------------------------

    def authenticate(self, header: str | None) -> Principal:
        """The principal behind an ``Authorization: Bearer`` header.

        Args:
            header: the header value (None when absent).

        Returns:
            The principal.

        Raises:
            TokensNotConfiguredError: nothing configured (403, before any token is looked at).
            HTTPError: 401 for a missing or unknown token.
        """
        if not self.tokens.configured:
            raise TokensNotConfiguredError(
                "writes are refused: no registry write token is configured on the server "
                "(run `llmopt registry init` there)"
            )
        scheme, _, supplied = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not supplied.strip():
            raise HTTPError(401, "unauthorized", "missing bearer token")
        try:
            return self.tokens.authenticate(supplied.strip())
        except PermissionDeniedError:
            raise HTTPError(401, "unauthorized", "wrong bearer token") from None

    @staticmethod
    def _fields(body: Any, allowed: set[str], required: set[str], who: Principal) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise HTTPError(400, "bad_json", "request body must be a JSON object")
        unknown, missing = set(body) - allowed - {"actor"}, required - set(body)
        if unknown or missing:
            raise HTTPError(
                422, "invalid", f"unknown fields {sorted(unknown)}, missing {sorted(missing)}"
            )
        if "actor" in body and body["actor"] != who.name:
            raise HTTPError(403, "forbidden", "actor is the authenticated principal; omit it")
        return body

    def _precondition(
        self, use_case: str, fields: dict[str, Any], if_match: str | None
    ) -> int | None:
        if "expected_production" in fields:
            expected = fields["expected_production"]
            if expected is not None and (
                isinstance(expected, bool)
                or not isinstance(expected, int)
                or not 0 < expected < 2**31
            ):
                raise HTTPError(422, "invalid", "expected_production must be a version or null")
            return expected
        if if_match is None:
            raise HTTPError(
                428, "precondition_required",
                "send expected_production (the production version you saw) or If-Match",
            )  # fmt: skip
        try:
            _, _, etag, number = self._load(use_case, "production")
        except NotFoundError:
            raise PreconditionFailedError(
                f"{use_case}: If-Match given, but no production"
            ) from None
        if not etag_matches(if_match, etag):
            raise PreconditionFailedError(f"{use_case}: production changed since that ETag")
        return number

    def route_post(
        self, raw_path: str, body: Any, principal: Principal, if_match: str | None = None
    ) -> tuple[str, Response]:
        """Answer a write as ``principal``.

        Args:
            raw_path: the request target as sent.
            body: the parsed JSON body.
            principal: the authenticated writer (the audit's actor).
            if_match: the ``If-Match`` header (a promote/rollback precondition).

        Returns:
            ``(endpoint label, response)``.
        """
        parts = self.split_path(raw_path)
        if len(parts) < 3 or parts[:2] != ["v1", "configs"]:
            raise HTTPError(404, "not_found", "no such endpoint")
        use_case = self._use_case(parts[2])
        if len(parts) == 3:
            action = "publish"
        elif parts[3:] == ["rollback"]:
            action = "rollback"
        elif len(parts) == 5 and _is_version(parts[3]) and parts[4] in _ROLE_OF:
            action = parts[4]
        else:
            raise HTTPError(404, "not_found", "no such endpoint")
        principal.require(_ROLE_OF[action])
        result = self._write(
            action, use_case=use_case, parts=parts, body=body, who=principal, if_match=if_match
        )
        self.invalidate()
        return result

    def _write(
        self, action: str, *, use_case: str, parts: list[str], body: Any, who: Principal,
        if_match: str | None,
    ) -> tuple[str, Response]:  # fmt: skip
        if action == "publish":
            fields = self._fields(
                body, {"config", "expected_version", "reason", "run_id", "evidence"},
                {"config", "expected_version", "reason"}, who,
            )  # fmt: skip
            version = self.store.publish(
                use_case, RegistryConfig.from_dict(fields["config"]),
                expected_version=fields["expected_version"], actor=who.name,
                reason=fields["reason"], run_id=fields.get("run_id"),
                evidence=fields.get("evidence"),
            )  # fmt: skip
            return "publish", json_response(201, version.to_document())
        if action == "rollback":
            fields = self._fields(
                body, {"reason", "to_version", "expected_production"}, {"reason"}, who
            )
            expected = self._precondition(use_case, fields, if_match)
            version = self.store.rollback(
                use_case, actor=who.name, reason=fields["reason"],
                to_version=fields.get("to_version"), expected_production=expected,
                check_expected=True,
            )  # fmt: skip
            return "rollback", json_response(200, version.to_document())
        allowed = {"comment", "expected_production"} if action == "promote" else {"comment"}
        fields = self._fields(body, allowed, {"comment"}, who)
        number, comment = int(parts[3]), fields["comment"]
        if action == "promote":
            expected = self._precondition(use_case, fields, if_match)
            version = self.store.promote(
                use_case, number, actor=who.name, comment=comment,
                expected_production=expected, check_expected=True,
            )  # fmt: skip
        else:
            version = getattr(self.store, action)(use_case, number, actor=who.name, comment=comment)
        return "transition", json_response(200, version.to_document())
