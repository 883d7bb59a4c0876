"""HTTP JSON API of the registry: the socket server around :class:`tasks.registry.app.RegistryApp`.

Built on the standard library's ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive, Nagle off): on this
project's 2-core machines a minimal endpoint served 3,400 req/s against 1,830 for FastAPI on
uvicorn without ``httptools`` (see ``docs/benchmarks.md``). Request bodies are read under a
``body_timeout`` (a Content-Length larger than the body gets a 408, not a thread held for a
minute), idle keep-alive connections are closed after ``idle_timeout``, and the server refuses to
bind beyond loopback unless told ``allow_remote``.

Endpoints (``{uc}`` must match the use-case pattern; anything else is a 400, never a file path):

- ``GET /health``, ``GET /metrics`` (Prometheus), ``GET /v1/use-cases``
- ``GET /v1/configs/{uc}[/{version|alias}]``        a document with its ETag (304 on match)
- ``GET /v1/configs/{uc}/history``                 audit trail
- ``POST /v1/configs/{uc}``                        publish a candidate        (role ``propose``)
- ``POST /v1/configs/{uc}/{version}/approve|reject``                          (role ``approve``)
- ``POST /v1/configs/{uc}/{version}/promote``, ``POST /v1/configs/{uc}/rollback``
  with ``expected_production`` or ``If-Match``                               (role ``promote``)
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tasks.core.errors import LlmoptError
from tasks.core.settings import Settings
from tasks.registry.app import RegistryApp
from tasks.registry.auth import TokenBook, load_tokens, tokens_path
from tasks.registry.processes import check_bind_host, serve_in_subprocess, settings_env
from tasks.registry.responses import HTTPError, Response, error_response
from tasks.registry.store import RegistryStore

__all__ = [
    "MAX_BODY_BYTES",
    "RegistryApp",
    "check_bind_host",
    "make_server",
    "serve",
    "serve_in_background",
    "serve_in_subprocess",
    "settings_env",
]

MAX_BODY_BYTES = 1 << 20


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "llmopt-registry/2"
    app: RegistryApp
    timeout = 30.0  # idle keep-alive connections give their thread back
    body_timeout: float = 10.0
    max_body_bytes: int = MAX_BODY_BYTES
    _discard = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests the standard library refuses itself (bad request line, header
        too long, unsupported method) get the same one-line JSON error as everything else."""
        self.close_connection = True
        if code == 501:  # "Unsupported method": the client's mistake, not ours
            code, message = 405, f"method {self.command!r:.40} is not supported"
        detail = message or self.responses.get(code, ("error",))[0]
        error = HTTPError(code, "bad_request" if code < 500 else "internal", detail)
        with contextlib.suppress(OSError):
            self._send("error", error_response(error), time.perf_counter())

    def _send(self, endpoint: str, response: Response, started: float) -> None:
        status, body, content_type, headers = response
        # counted before the answer leaves: a client that has its answer sees it in /metrics
        self.app.record(endpoint, self.command or "-", status, time.perf_counter() - started)
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

    def do_GET(self) -> None:
        started = time.perf_counter()
        try:
            endpoint, response = self.app.route_get(self.path, self.headers.get("If-None-Match"))
        except Exception as exc:
            endpoint, response = "error", error_response(exc)
        self._send(endpoint, response, started)

    do_HEAD = do_GET

    def _content_length(self) -> int:
        if self.headers.get("Transfer-Encoding"):
            raise HTTPError(411, "length_required", "send a Content-Length, not chunked bodies")
        header = self.headers.get("Content-Length")
        if header is None:
            raise HTTPError(411, "length_required", "Content-Length is required")
        header = header.strip()
        if not (header.isascii() and header.isdigit()) or len(header) > 18:
            raise HTTPError(400, "bad_length", "Content-Length must be a non-negative integer")
        length = int(header)
        if length > self.max_body_bytes:
            self._discard = length
            raise HTTPError(413, "too_large", f"body limit is {self.max_body_bytes} bytes")
        return length

    def _read_body(self) -> Any:
        length = self._content_length()
        self.connection.settimeout(self.body_timeout)
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            raise HTTPError(
                408, "timeout", f"body not received within {self.body_timeout}s"
            ) from None
        finally:
            self.connection.settimeout(self.timeout)
        if len(raw) < length:
            raise HTTPError(400, "short_body", "the body is shorter than its Content-Length")
        try:
            return json.loads(raw, parse_constant=_reject_constant)
        except RecursionError:
            raise HTTPError(400, "too_deep", "JSON nested too deeply") from None
        except ValueError as exc:  # includes UnicodeDecodeError
            raise HTTPError(400, "bad_json", f"malformed JSON: {exc}") from exc

    def _discard_body(self) -> None:
        """After a 413/401, swallow (a bounded amount of) the body so the client reads the reply."""
        remaining = min(self._discard, 16 * self.max_body_bytes)
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
        endpoint, self._discard = "write", 0
        try:
            try:
                principal = self.app.authenticate(self.headers.get("Authorization"))
            except Exception:
                self.close_connection = True  # do not parse a body from an unknown sender
                length = self.headers.get("Content-Length", "0").strip()
                self._discard = int(length) if length.isdigit() and len(length) < 19 else 0
                raise
            try:
                body = self._read_body()
            except HTTPError:
                self.close_connection = True  # the stream position is unknown: start afresh
                raise
            endpoint, response = self.app.route_post(
                self.path, body, principal, if_match=self.headers.get("If-Match")
            )
        except Exception as exc:
            response = error_response(exc)
        self._send(endpoint, response, started)
        if self._discard:
            self._discard_body()

    def _not_allowed(self) -> None:
        self.close_connection = True
        error = HTTPError(405, "method_not_allowed", f"{self.command} is not supported")
        self._send("error", error_response(error), time.perf_counter())

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True


def make_server(
    app: RegistryApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    body_timeout: float = 10.0,
    idle_timeout: float = 30.0,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server for ``app``.

    Args:
        app: the routing application.
        host: address to bind.
        port: port (0 picks a free one).
        body_timeout: seconds a request body may take to arrive (then 408).
        idle_timeout: seconds an idle keep-alive connection is kept.
        max_body_bytes: larger bodies get a 413.

    Returns:
        The server; call ``serve_forever``.
    """
    attrs = {"app": app, "body_timeout": body_timeout, "timeout": idle_timeout}
    handler = type("RegistryHandler", (_Handler,), attrs | {"max_body_bytes": max_body_bytes})
    return _Server((host, port), handler)


def _app_for(
    settings: Settings,
    store: RegistryStore | None,
    refresh_interval: float,
    tokens: TokenBook | None,
) -> RegistryApp:
    return RegistryApp(
        store or RegistryStore.from_settings(settings),
        tokens=tokens if tokens is not None else load_tokens(tokens_path(settings)),
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
    tokens: TokenBook | None = None,
    body_timeout: float = 10.0,
    allow_remote: bool = False,
) -> Iterator[str]:
    """Run the API in a background thread; yields its base URL and stops it on exit.

    Args:
        settings: resolved settings (store, tokens file).
        host: address to bind (loopback unless ``allow_remote``).
        port: port (0 picks a free one).
        store: an open store to serve (default: from settings, disposed on exit).
        refresh_interval: revision-check interval of the document cache.
        tokens: principals (default: the tokens file of ``settings``).
        body_timeout: seconds a request body may take.
        allow_remote: allow binding beyond loopback.

    Yields:
        The base URL, e.g. ``http://127.0.0.1:41234``.
    """
    check_bind_host(host, allow_remote=allow_remote)
    app = _app_for(settings, store, refresh_interval, tokens)
    server = make_server(app, host, port, body_timeout=body_timeout)
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
    allow_remote: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (``llmopt registry serve``).

    Args:
        settings: resolved settings.
        host: address to bind (loopback unless ``allow_remote``).
        port: port.
        refresh_interval: revision-check interval of the document cache.
        allow_remote: allow binding beyond loopback.
        on_ready: called with the base URL once bound.
    """
    check_bind_host(host, allow_remote=allow_remote)
    app = _app_for(settings, None, refresh_interval, None)
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


def main(argv: list[str] | None = None) -> int:
    """``python -m tasks.registry.api``: serve with settings from the environment, print the URL."""
    import argparse  # only the command line needs it

    from tasks.core.settings import load_settings

    parser = argparse.ArgumentParser(description="registry HTTP API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--refresh-interval", type=float, default=0.25)
    parser.add_argument("--allow-remote", action="store_true", help="bind beyond loopback")
    args = parser.parse_args(argv)
    try:
        serve(
            load_settings(), host=args.host, port=args.port,
            refresh_interval=args.refresh_interval, allow_remote=args.allow_remote,
            on_ready=lambda url: print(url, flush=True),
        )  # fmt: skip
    except LlmoptError as exc:
        print(f"llmopt: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
