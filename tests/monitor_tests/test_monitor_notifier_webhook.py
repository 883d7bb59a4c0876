"""The notifier: the log always, Apprise to a webhook when configured (local server only)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from strategies.monitor.degradation import AlertCandidate
from tasks.monitoring.run import NotifierConfig, notify


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.received.append(  # type: ignore[attr-defined]
            {"path": self.path, "body": json.loads(self.rfile.read(length) or b"{}")}
        )
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # keep test output clean
        return


@pytest.fixture
def webhook() -> Iterator[HTTPServer]:
    """A tiny HTTP server on 127.0.0.1 (free port) that records POSTs; stops after the test."""
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []  # type: ignore[attr-defined]
    server.timeout = 0.5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _alert(use_case: str, severity: str, key: str) -> AlertCandidate:
    return AlertCandidate(
        incident_key=f"{use_case}|rule|{key}",
        use_case=use_case,
        kind="rule",
        name=key,
        severity=severity,  # type: ignore[arg-type]
        message=f"{use_case}: {key} fired",
    )


def test_webhook_gets_one_message_per_use_case_at_or_above_min_severity(
    webhook: HTTPServer,
) -> None:
    port = webhook.server_address[1]
    config = NotifierConfig(urls=(f"json://127.0.0.1:{port}/hook",), min_severity="warning")
    alerts = [
        _alert("sales-email", "critical", "quality_drop"),
        _alert("sales-email", "warning", "latency_slo"),
        _alert("code-review", "info", "anomaly"),
    ]
    channels = notify(alerts, config)
    assert channels == ("log", "apprise:1")
    received = webhook.received  # type: ignore[attr-defined]
    assert len(received) == 1  # code-review's info alert is below min_severity
    body = received[0]["body"]
    assert received[0]["path"] == "/hook"
    assert "sales-email" in body["title"] and "critical" in body["title"]
    assert "quality_drop fired" in body["message"] and "latency_slo fired" in body["message"]


def test_default_is_log_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llmopt.monitoring"):
        channels = notify([_alert("uc", "critical", "error_rate")], NotifierConfig())
    assert channels == ("log",)
    assert "uc|rule|error_rate" in caplog.text


def test_unreachable_webhook_is_reported_not_raised() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = NotifierConfig(urls=(f"json://127.0.0.1:{port}/hook",))
    assert notify([_alert("uc", "warning", "cost_spike")], config) == ("log", "apprise-failed")
