"""The serving-side client: light imports, TTL cache, conditional GET, last-known-good fallback."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tasks.core.settings import REPO_ROOT, Settings
from tasks.registry.api import serve_in_background
from tasks.registry.client import RegistryClient, RegistryUnavailableError
from tasks.registry.store import RegistryStore

UC = "support-summarize"


def test_client_imports_nothing_heavy() -> None:
    code = (
        "import sys, tasks.registry.client, tasks.registry.assignment, tasks.registry.model, "
        "tasks.registry.snapshot, tasks.registry.errors; "
        "print([m for m in ('prefect', 'duckdb', 'mlflow', 'sqlalchemy', 'pandas', 'numpy', "
        "'prometheus_client') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _count(base_url: str, status: str) -> float:
    text = urllib.request.urlopen(base_url + "/metrics").read().decode()
    pattern = (
        rf'llmopt_registry_requests_total{{endpoint="config",method="GET",status="{status}"}} (\S+)'
    )
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def published(sqlite_store: RegistryStore, make_config: Any) -> RegistryStore:
    sqlite_store.publish(
        UC, make_config(weights=(0.5, 0.5)), expected_version=0, actor="a", reason="1"
    )
    sqlite_store.approve(UC, 1, actor="a", comment="ok")
    sqlite_store.promote(UC, 1, actor="a", comment="ship")
    return sqlite_store


def test_ttl_cache_then_conditional_get_then_new_version(
    settings: Settings, published: RegistryStore, tmp_path: Path
) -> None:
    clock = FakeClock()
    with serve_in_background(settings, store=published, refresh_interval=0.0) as url:
        client = RegistryClient(
            url, ttl_seconds=5.0, cache_dir=tmp_path / "lkg", clock=clock, background=False
        )
        assert client.get(UC).version == 1 and client.last_source == "network"
        for _ in range(50):
            assert client.get(UC).version == 1
        assert client.last_source == "cache"
        assert (_count(url, "200"), _count(url, "304")) == (1.0, 0.0)
        clock.now += 6
        assert client.get(UC).version == 1 and client.last_source == "not-modified"
        assert (_count(url, "200"), _count(url, "304")) == (1.0, 1.0)
        config = published.get(UC).config
        published.publish(UC, config, expected_version=1, actor="a", reason="2")
        published.approve(UC, 2, actor="a", comment="ok")
        published.promote(UC, 2, actor="a", comment="ship")
        assert client.get(UC).version == 1  # still inside the TTL
        clock.now += 6
        assert client.get(UC).version == 2 and client.last_source == "network"
    assert json.loads((tmp_path / "lkg" / f"{UC}.json").read_text())["version"] == 2


def test_fallback_to_memory_then_disk_when_registry_is_down(
    settings: Settings, published: RegistryStore, tmp_path: Path
) -> None:
    clock = FakeClock()
    cache_dir = tmp_path / "lkg"
    with serve_in_background(settings, store=published) as url:
        client = RegistryClient(
            url, ttl_seconds=1.0, timeout=1.0, cache_dir=cache_dir, clock=clock, background=False
        )
        first = client.get(UC)
    clock.now += 5  # the server is gone now
    found = client.lookup(UC)
    assert found.version == first and (found.source, found.age_seconds) == ("stale", 5.0)
    assert client.last_error is not None and found.last_error == client.last_error
    assert client.counters["fallbacks"] == 1
    restarted = RegistryClient(url, timeout=1.0, cache_dir=cache_dir, clock=clock)
    assert restarted.get(UC).checksum == first.checksum
    assert restarted.last_source == "disk" and restarted.counters["fallback_disk"] == 1
    # same units, same arms, from the fallback copy
    units = [f"u{i}" for i in range(200)]
    assert [client.assign(UC, u).arm.arm_id for u in units] == [
        restarted.assign(UC, u).arm.arm_id for u in units
    ]
    with pytest.raises(RegistryUnavailableError, match="no last-known-good"):
        RegistryClient(url, timeout=1.0, cache_dir=tmp_path / "empty").get(UC)
    (cache_dir / f"{UC}.json").write_text('{"truncated": ')
    with pytest.raises(RegistryUnavailableError, match="unusable"):
        RegistryClient(url, timeout=1.0, cache_dir=cache_dir).get(UC)


@contextmanager
def _garbage_server(body: bytes) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_garbage_answers_fall_back_to_last_known_good(
    settings: Settings, published: RegistryStore, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "lkg"
    with serve_in_background(settings, store=published) as url:
        good = RegistryClient(url, cache_dir=cache_dir).get(UC)
        real_doc = json.loads(urllib.request.urlopen(f"{url}/v1/configs/{UC}").read())
    tampered = json.loads(json.dumps(real_doc))
    tampered["config"]["params"]["model"] = "gpt-4o"  # payload no longer matches its checksum
    other_uc = {**real_doc, "use_case": "ticket-classify"}
    for body in (
        b"<html>oops</html>",
        b"{}",
        json.dumps(tampered).encode(),
        json.dumps(other_uc).encode(),
    ):
        with _garbage_server(body) as bad_url:
            client = RegistryClient(bad_url, cache_dir=cache_dir)
            assert client.get(UC).checksum == good.checksum
            assert client.last_source == "disk", body[:40]
    # the garbage never overwrote the last-known-good copy
    assert json.loads((cache_dir / f"{UC}.json").read_text())["checksum"] == good.checksum


def test_assignment_uses_the_served_plan(settings: Settings, published: RegistryStore) -> None:
    with serve_in_background(settings, store=published) as url:
        client = RegistryClient.from_settings(dataclasses.replace(settings, registry_api_url=url))
        picks = [client.assign(UC, f"user-{i}") for i in range(2000)]
    arms = {p.arm.arm_id for p in picks}
    assert arms == {"arm-0", "arm-1"}
    share = sum(p.arm.arm_id == "arm-1" for p in picks) / len(picks)
    assert 0.45 < share < 0.55  # 2000 draws at 0.5: about 4.5 standard errors of slack
    assert picks[0].config_id == f"{UC}/v1/{picks[0].arm.arm_id}"
    assert picks[0].propensity == 0.5
    assert client.cache_dir == settings.home / "data" / "registry-client-cache"
    assert (client.cache_dir / f"{UC}.json").exists()
