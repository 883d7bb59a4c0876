"""HTTP JSON API of the registry: open reads, token-guarded writes, ETags, health and metrics.

Built on the standard library's ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive, Nagle off): on this
project's 2-core machines a minimal endpoint served 3,400 req/s against 1,830 for FastAPI on
uvicorn without ``httptools`` (the pinned set has none), with a lower p99 (see the README and
``tests/benchmarks/bench_registry.py``). Rendered documents are cached in memory per use case and
invalidated by the store's per-use-case ``revision`` counter, checked at most every
``refresh_interval`` seconds (writes made through this API invalidate at once), so a poller
costs one dict lookup and, with ``If-None-Match``, a body-less 304.

Endpoints (``{uc}`` must match the use-case pattern; anything else is a 400, never a file path):

- ``GET /health``                                  store reachable -> 200, else 503
- ``GET /metrics``                                 Prometheus text format
- ``GET /v1/use-cases``                            use cases with production versions
- ``GET /v1/configs/{uc}``                         production document (ETag)
- ``GET /v1/configs/{uc}/{version|alias}``         one version (ETag)
- ``GET /v1/configs/{uc}/history``                 audit trail
- ``POST /v1/configs/{uc}``                        publish a candidate   (bearer token)
- ``POST /v1/configs/{uc}/{version}/approve|reject|promote``            (bearer token)
- ``POST /v1/configs/{uc}/rollback``                                    (bearer token)
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tasks.core.settings import Settings
from tasks.registry.model import (
    ConfigValidationError,
    RegistryConfig,
    canonical_json,
    validate_use_case,
)
from tasks.registry.store import (
    InvalidTransitionError,
    NotFoundError,
    RegistryStore,
    StaleVersionError,
)

__all__ = [
    "MAX_BODY_BYTES",
    "RegistryApp",
    "make_server",
    "serve",
    "serve_in_background",
    "serve_in_subprocess",
]

MAX_BODY_BYTES = 1 << 20
_JSON = "application/json"


class HTTPError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


Response = tuple[int, bytes, str, dict[str, str]]


def _json_body(status: int, payload: Any, extra: dict[str, str] | None = None) -> Response:
    return status, canonical_json(payload), _JSON, extra or {}


def _is_version(text: str) -> bool:
    """A plain ASCII version number of sane size (no '²', no 30-digit overflow)."""
    return text.isascii() and text.isdigit() and len(text) <= 9


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


class RegistryApp:
    """Request routing and the document cache, independent of the socket server."""

    def __init__(
        self,
        store: RegistryStore,
        *,
        token: str,
        max_body_bytes: int = MAX_BODY_BYTES,
        refresh_interval: float = 0.25,
    ) -> None:
        if not token:
            raise ValueError("a non-empty registry token is required for write endpoints")
        self.store = store
        self._token = token.encode("utf-8")
        self.max_body_bytes = max_body_bytes
        self.refresh_interval = refresh_interval
        self._lock = threading.Lock()
        self._revisions: dict[str, int] = {}
        self._revisions_at = -math.inf
        self._cache: dict[tuple[str, str], tuple[int, bytes, str]] = {}
        self.metrics = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "llmopt_registry_requests",
            "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=self.metrics,
        )
        self.latency = Histogram(
            "llmopt_registry_request_seconds",
            "Request handling time by endpoint",
            ["endpoint"],
            buckets=(0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0),
            registry=self.metrics,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.served_version = Gauge(
            "llmopt_registry_served_version",
            "Production version currently served per use case",
            ["use_case"],
            registry=self.metrics,
        )

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

    def _document(self, use_case: str, ref: str) -> tuple[bytes, str]:
        """The rendered document, never older than one already served.

        Cache entries carry the revision read in the same transaction as the document and only
        move forward, so concurrent loads finishing out of order cannot bring an old one back.
        """
        key = (use_case, ref)
        cached = self._cache.get(key)
        if cached is not None and cached[0] >= self._revision(use_case):
            return cached[1], cached[2]
        version, revision = self.store.get_with_revision(use_case, ref)
        body = canonical_json(version.to_document())
        entry = (revision, body, _etag(body))
        with self._lock:
            current = self._cache.get(key)
            if current is not None and current[0] > revision:
                entry = current  # a newer document was cached while we were loading
            else:
                self._cache[key] = entry
                if ref == "production":
                    self.served_version.labels(use_case=use_case).set(version.version)
        return entry[1], entry[2]

    # -- request handling -----------------------------------------------------------------------

    def authorize(self, header: str | None) -> None:
        scheme, _, supplied = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not supplied:
            raise HTTPError(401, "unauthorized", "missing bearer token")
        if not hmac.compare_digest(supplied.strip().encode("utf-8"), self._token):
            raise HTTPError(401, "unauthorized", "wrong bearer token")

    @staticmethod
    def split_path(raw_path: str) -> list[str]:
        """Path segments, each percent-decoded once and refused if it could traverse."""
        path = raw_path.split("?", 1)[0].split("#", 1)[0]
        if not path.startswith("/"):
            raise HTTPError(400, "bad_path", "path must start with /")
        segments = []
        for raw in path.strip("/").split("/"):
            segment = unquote(raw, errors="strict") if "%" in raw else raw
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

    def route_get(self, raw_path: str, if_none_match: str | None) -> tuple[str, Response]:
        parts = self.split_path(raw_path) if raw_path not in {"/", ""} else []
        if parts in (["health"], ["healthz"]):
            try:
                count = len(self.store.revisions())
            except Exception as exc:  # the store is down: say so, do not crash the server
                return "health", _json_body(503, {"status": "error", "detail": str(exc)[:200]})
            return "health", _json_body(200, {"status": "ok", "use_cases": count})
        if parts == ["metrics"]:
            return "metrics", (200, generate_latest(self.metrics), CONTENT_TYPE_LATEST, {})
        if parts == ["v1", "use-cases"]:
            items = []
            for use_case in self.store.use_cases():
                try:
                    production: int | None = self.store.get(use_case).version
                except NotFoundError:
                    production = None
                items.append({"use_case": use_case, "production_version": production})
            return "use_cases", _json_body(200, {"use_cases": items})
        if len(parts) in {3, 4} and parts[:2] == ["v1", "configs"]:
            use_case = self._use_case(parts[2])
            if len(parts) == 4 and parts[3] == "history":
                entries = [asdict(e) for e in self.store.history(use_case)]
                if not entries:
                    raise HTTPError(404, "not_found", f"no history for {use_case!r}")
                return "history", _json_body(200, {"use_case": use_case, "history": entries})
            ref = parts[3] if len(parts) == 4 else "production"
            if not (_is_version(ref) or ref in {"production", "candidate", "latest"}):
                raise HTTPError(400, "bad_ref", "version must be a number or an alias")
            endpoint = "config" if len(parts) == 3 else "config_version"
            body, etag = self._document(use_case, ref)
            headers = {"ETag": etag, "Cache-Control": "no-cache"}
            if _etag_matches(if_none_match, etag):
                return endpoint, (304, b"", _JSON, headers)
            return endpoint, (200, body, _JSON, headers)
        raise HTTPError(404, "not_found", "no such endpoint")

    @staticmethod
    def _fields(body: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise HTTPError(400, "bad_json", "request body must be a JSON object")
        unknown, missing = set(body) - allowed, required - set(body)
        if unknown or missing:
            raise HTTPError(
                422, "invalid", f"unknown fields {sorted(unknown)}, missing {sorted(missing)}"
            )
        return body

    def route_post(self, raw_path: str, body: Any) -> tuple[str, Response]:
        parts = self.split_path(raw_path)
        if len(parts) < 3 or parts[:2] != ["v1", "configs"]:
            raise HTTPError(404, "not_found", "no such endpoint")
        use_case = self._use_case(parts[2])
        if len(parts) == 3:
            fields = self._fields(
                body,
                {"config", "expected_version", "actor", "reason", "run_id", "evidence"},
                {"config", "expected_version", "actor", "reason"},
            )
            config = RegistryConfig.from_dict(fields["config"])
            version = self.store.publish(
                use_case,
                config,
                expected_version=fields["expected_version"],
                actor=fields["actor"],
                reason=fields["reason"],
                run_id=fields.get("run_id"),
                evidence=fields.get("evidence"),
            )
            self.invalidate()
            return "publish", _json_body(201, version.to_document())
        if parts[3:] == ["rollback"]:
            fields = self._fields(body, {"actor", "reason", "to_version"}, {"actor", "reason"})
            to_version = fields.get("to_version")
            if to_version is not None and (
                isinstance(to_version, bool) or not isinstance(to_version, int)
            ):
                raise HTTPError(422, "invalid", "to_version must be an integer")
            version = self.store.rollback(
                use_case, actor=fields["actor"], reason=fields["reason"], to_version=to_version
            )
            self.invalidate()
            return "rollback", _json_body(200, version.to_document())
        if (
            len(parts) == 5
            and _is_version(parts[3])
            and parts[4] in {"approve", "reject", "promote"}
        ):
            fields = self._fields(body, {"actor", "comment"}, {"actor", "comment"})
            action: Callable[..., Any] = getattr(self.store, parts[4])
            version = action(
                use_case, int(parts[3]), actor=fields["actor"], comment=fields["comment"]
            )
            self.invalidate()
            return "transition", _json_body(200, version.to_document())
        raise HTTPError(404, "not_found", "no such endpoint")


def _error_response(exc: Exception) -> Response:
    if isinstance(exc, HTTPError):
        status, code, detail = exc.status, exc.code, exc.detail
    elif isinstance(exc, NotFoundError):
        status, code, detail = 404, "not_found", str(exc)
    elif isinstance(exc, StaleVersionError):
        status, code, detail = 409, "stale_version", str(exc)
    elif isinstance(exc, InvalidTransitionError):
        status, code, detail = 409, "invalid_transition", str(exc)
    elif isinstance(exc, ConfigValidationError | TypeError):
        status, code, detail = 422, "invalid", str(exc)
    else:
        status, code, detail = 500, "internal", type(exc).__name__
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return _json_body(status, {"error": code, "detail": detail[:500]}, headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections give their thread back
    server_version = "llmopt-registry/1"
    app: RegistryApp
    _discard = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, endpoint: str, response: Response, started: float) -> None:
        status, body, content_type, headers = response
        self.send_response_only(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self.app.record(endpoint, self.command, status, time.perf_counter() - started)

    def do_GET(self) -> None:
        started = time.perf_counter()
        try:
            endpoint, response = self.app.route_get(self.path, self.headers.get("If-None-Match"))
        except Exception as exc:
            endpoint, response = "error", _error_response(exc)
        self._send(endpoint, response, started)

    do_HEAD = do_GET

    def _read_body(self) -> Any:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise HTTPError(411, "length_required", "send a Content-Length, not chunked bodies")
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            raise HTTPError(411, "length_required", "Content-Length is required")
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            raise HTTPError(400, "bad_length", "Content-Length must be an integer") from None
        if length < 0 or length > self.app.max_body_bytes:
            self.close_connection = True  # the unread body must not be parsed as a request
            self._discard = max(0, length)
            raise HTTPError(413, "too_large", f"body limit is {self.app.max_body_bytes} bytes")
        raw = self.rfile.read(length)
        try:
            return json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, "bad_json", f"malformed JSON: {exc}") from exc

    def _discard_body(self) -> None:
        """After a 413, swallow (a bounded amount of) the body so the client can read the reply."""
        remaining = min(self._discard, 16 * self.app.max_body_bytes)
        self._discard = 0
        with contextlib.suppress(OSError):
            self.connection.settimeout(2.0)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)

    def do_POST(self) -> None:
        started = time.perf_counter()
        endpoint = "write"
        self._discard = 0
        try:
            try:
                self.app.authorize(self.headers.get("Authorization"))
            except HTTPError:
                self.close_connection = True  # do not parse a body from an unknown sender
                length = self.headers.get("Content-Length", "0")
                self._discard = int(length) if length.isdigit() else 0
                raise
            body = self._read_body()
            endpoint, response = self.app.route_post(self.path, body)
        except Exception as exc:
            response = _error_response(exc)
        self._send(endpoint, response, started)
        if self._discard:
            self._discard_body()

    def _not_allowed(self) -> None:
        self.close_connection = True
        error = HTTPError(405, "method_not_allowed", f"{self.command} is not supported")
        self._send("error", _error_response(error), time.perf_counter())

    do_PUT = do_DELETE = do_PATCH = _not_allowed


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True


def make_server(app: RegistryApp, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server for ``app``; ``port=0`` picks a free port."""
    handler = type("RegistryHandler", (_Handler,), {"app": app})
    return _Server((host, port), handler)


def _app_for(
    settings: Settings, store: RegistryStore | None, refresh_interval: float
) -> RegistryApp:
    return RegistryApp(
        store or RegistryStore.from_settings(settings),
        token=settings.registry_token,
        refresh_interval=refresh_interval,
    )


@contextmanager
def serve_in_background(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    store: RegistryStore | None = None,
    refresh_interval: float = 0.25,
) -> Iterator[str]:
    """Run the API in a background thread; yields its base URL and stops it on exit.

    Example:
        >>> with serve_in_background(settings) as base_url:   # doctest: +SKIP
        ...     urllib.request.urlopen(base_url + "/health").status
        200
    """
    app = _app_for(settings, store, refresh_interval)
    server = make_server(app, host, port)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="registry-api",
        daemon=True,
    )
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        if store is None:
            app.store.dispose()


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    refresh_interval: float = 0.25,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (``llmopt registry serve``)."""
    app = _app_for(settings, None, refresh_interval)
    server = make_server(app, host, port)

    def stop(_signum: int, _frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    if on_ready is not None:
        on_ready(f"http://{host}:{server.server_address[1]}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.store.dispose()


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that make another process resolve the same registry settings."""
    return {
        "LLMOPT_HOME": str(settings.home),
        "LLMOPT_CONFIG_DIR": str(settings.config_dir),
        "LLMOPT_REGISTRY_URL": settings.registry_url,
        "LLMOPT_REGISTRY_SNAPSHOT_DIR": str(settings.registry_snapshot_dir),
        "LLMOPT_REGISTRY_TOKEN": settings.registry_token,
    }


@contextmanager
def serve_in_subprocess(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    refresh_interval: float = 0.25,
    startup_timeout: float = 60.0,
) -> Iterator[str]:
    """Run the API in its own process (``python -m tasks.registry.api``); yields its base URL.

    The child prints its URL once bound (``port=0`` picks a free port, no race); it is sent
    SIGTERM on exit and killed if it does not stop within 10 s.
    """
    command = [sys.executable, "-m", "tasks.registry.api", "--host", host, "--port", str(port)]
    command += ["--refresh-interval", str(refresh_interval)]
    proc = subprocess.Popen(
        command,
        env={**os.environ, **settings_env(settings)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        stdout = proc.stdout
        assert stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(startup_timeout)
        line = ready[0].strip() if ready else ""
        if not line.startswith("http://"):
            raise RuntimeError(f"registry API did not start (exit code {proc.poll()}): {line!r}")
        yield line
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m tasks.registry.api``: serve with settings from the environment, print the URL."""
    import argparse

    from tasks.core.settings import load_settings

    parser = argparse.ArgumentParser(description="registry HTTP API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--refresh-interval", type=float, default=0.25)
    args = parser.parse_args(argv)
    serve(
        load_settings(),
        host=args.host,
        port=args.port,
        refresh_interval=args.refresh_interval,
        on_ready=lambda url: print(url, flush=True),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
