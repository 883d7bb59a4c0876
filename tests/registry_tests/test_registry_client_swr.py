"""Stale-while-revalidate: a hung or dead registry never blocks a caller holding a value."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tasks.core.settings import Settings
from tasks.registry.api import serve_in_background
from tasks.registry.client import RegistryClient, RegistryUnavailableError, StaleConfigError
from tasks.registry.store import RegistryStore

UC = "support-summarize"


@contextmanager
def hung_server() -> Iterator[str]:
    """A socket that accepts connections and never answers (a wedged registry)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(conn)  # keep it open, read nothing, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


@pytest.fixture
def published(sqlite_store: RegistryStore, make_config: Any) -> RegistryStore:
    sqlite_store.publish(UC, make_config(), expected_version=0, actor="a", reason="1")
    sqlite_store.approve(UC, 1, actor="a", comment="ok")
    sqlite_store.promote(UC, 1, actor="a", comment="ship")
    return sqlite_store


def _timed(client: RegistryClient, seconds: float) -> list[tuple[float, str, float]]:
    """Call lookup for ``seconds``; (duration, source, age) of every call."""
    calls = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        found = client.lookup(UC)
        calls.append((time.perf_counter() - started, found.source, found.age_seconds))
        time.sleep(0.005)
    return calls


@pytest.mark.slow  # ~2.7 s: callers keep calling through a hung server
def test_hung_server_never_blocks_callers_once_a_value_is_cached(
    settings: Settings, published: RegistryStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tasks.registry.client")
    with serve_in_background(settings, store=published) as url:
        client = RegistryClient(url, ttl_seconds=0.2, timeout=1.0)
        assert client.lookup(UC).source == "network"
        with hung_server() as hung:
            client.base_url = hung
            calls = _timed(client, 2.5)  # more than 10 TTLs and 2 request timeouts
            assert max(duration for duration, _, _ in calls) < 0.1, "a caller waited on I/O"
            assert {source for _, source, _ in calls} >= {"stale"}
            ages = [age for _, _, age in calls]
            assert ages == sorted(ages) and ages[-1] > 2.0  # age keeps growing while hung
            client.wait_for_refreshes(5)
            assert client.counters["refresh_failures"] >= 1 and client.counters["fallbacks"] == 1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
        client.base_url = url  # the registry answers again
        deadline = time.monotonic() + 5
        while client.lookup(UC).source != "cache" and time.monotonic() < deadline:
            time.sleep(0.05)
        found = client.lookup(UC)
        assert found.source == "cache" and found.age_seconds < 0.2 and found.last_error is None
        assert any("reachable again" in r.getMessage() for r in caplog.records)
        assert client.counters["recoveries"] == 1


def test_first_lookup_against_a_hung_server_waits_one_timeout_then_uses_disk(
    settings: Settings, published: RegistryStore, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "lkg"
    with serve_in_background(settings, store=published) as url:
        RegistryClient(url, cache_dir=cache_dir).get(UC)
    with hung_server() as hung:
        client = RegistryClient(hung, timeout=0.5, ttl_seconds=60, cache_dir=cache_dir)
        started = time.perf_counter()
        found = client.lookup(UC)
        assert time.perf_counter() - started < 1.5  # one request timeout, not more
        assert (found.source, found.version.version) == ("disk", 1)
        started = time.perf_counter()
        assert client.lookup(UC).version.version == 1
        assert time.perf_counter() - started < 0.05
        with pytest.raises(RegistryUnavailableError):
            RegistryClient(hung, timeout=0.3, cache_dir=tmp_path / "none").get(UC)


def test_background_refresh_picks_up_a_new_version(
    settings: Settings, published: RegistryStore
) -> None:
    with serve_in_background(settings, store=published, refresh_interval=0.0) as url:
        client = RegistryClient(url, ttl_seconds=0.1)
        assert client.get(UC).version == 1
        config = published.get(UC).config
        published.publish(UC, config, expected_version=1, actor="a", reason="2")
        published.approve(UC, 2, actor="a", comment="ok")
        published.promote(UC, 2, actor="a", comment="ship")
        time.sleep(0.15)
        assert client.lookup(UC).version.version == 1  # served stale while it revalidates
        client.wait_for_refreshes(5)
        found = client.lookup(UC)
        assert (found.version.version, found.source) == (2, "cache")


def test_max_staleness_raises_or_reports(
    settings: Settings, published: RegistryStore, caplog: pytest.LogCaptureFixture
) -> None:
    with serve_in_background(settings, store=published) as url:
        strict = RegistryClient(
            url, ttl_seconds=0.05, timeout=0.3, max_staleness_seconds=0.4, on_max_staleness="raise"
        )
        lenient = RegistryClient(url, ttl_seconds=0.05, timeout=0.3, max_staleness_seconds=0.4)
        strict.get(UC)
        lenient.get(UC)
    # the server is gone: connections are refused from here on
    time.sleep(0.2)
    assert strict.lookup(UC).over_max_staleness is False
    time.sleep(0.4)
    with pytest.raises(StaleConfigError, match=r"max 0\.4s"):
        strict.lookup(UC)
    found = lenient.lookup(UC)
    assert found.over_max_staleness and found.source == "stale" and found.age_seconds > 0.4
    assert lenient.counters["over_max_staleness"] >= 1
    lenient.wait_for_refreshes(5)
    strict.wait_for_refreshes(5)
    assert any("old configuration" in r.getMessage() for r in caplog.records)
