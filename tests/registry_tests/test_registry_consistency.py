"""Snapshots follow committed state in order, survive kill -9, and documents never contradict."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tasks.core.settings import REPO_ROOT, Settings
from tasks.registry.api import serve_in_background, settings_env
from tasks.registry.errors import StaleVersionError
from tasks.registry.model import canonical_json
from tasks.registry.store import RegistryStore

UC = "support-summarize"


def _seed_two(store: RegistryStore, make_config: Any) -> None:
    """v1 and v2 both approved, v2 in production (v1 retired): rollbacks can swing between."""
    for version, temperature in ((1, 0.1), (2, 0.9)):
        cfg = make_config(temperature=temperature)
        store.publish(UC, cfg, expected_version=version - 1, actor="p", reason="seed")
        store.approve(UC, version, actor="a", comment="ok")
        store.promote(UC, version, actor="a", comment="ship")


def _swing(store: RegistryStore, rounds: int, counts: list[int]) -> None:
    for _ in range(rounds):
        current = store.get(UC).version
        try:
            store.rollback(
                UC, actor="w", reason="swing", to_version=3 - current,
                expected_production=current, check_expected=True,
            )  # fmt: skip
            counts.append(1)
        except StaleVersionError:  # another writer moved production first: the precondition
            counts.append(0)


def _snapshot_matches(store: RegistryStore) -> None:
    path = store.snapshot_file(UC)
    assert path is not None
    assert path.read_bytes() == canonical_json(store.get(UC).to_document())
    assert not list(path.parent.glob(".*.tmp"))
    assert path.stat().st_mode & 0o777 == 0o644


def test_eight_concurrent_writers_leave_the_snapshot_equal_to_the_database(
    any_store: RegistryStore, make_config: Any
) -> None:
    _seed_two(any_store, make_config)
    counts: list[int] = []
    threads = [threading.Thread(target=_swing, args=(any_store, 15, counts)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(counts) == 120 and sum(counts) > 0
    _snapshot_matches(any_store)
    moves = [e for e in any_store.history(UC) if e.action == "rollback"]
    assert len(moves) == sum(counts)  # every success audited, every refusal left no trace


def test_concurrent_writers_through_the_api_leave_the_snapshot_equal(
    settings: Settings, sqlite_store: RegistryStore, make_config: Any, principals: dict[str, str]
) -> None:
    _seed_two(sqlite_store, make_config)
    statuses: list[int] = []

    def writer(base: str) -> None:
        for _ in range(12):
            current = json.loads(urllib.request.urlopen(f"{base}/v1/configs/{UC}").read())
            body = json.dumps(
                {"reason": "swing", "to_version": 3 - current["version"],
                 "expected_production": current["version"]}
            ).encode()  # fmt: skip
            request = urllib.request.Request(
                f"{base}/v1/configs/{UC}/rollback", data=body, method="POST",
                headers={"Authorization": f"Bearer {principals['ops']}"},
            )  # fmt: skip
            try:
                statuses.append(urllib.request.urlopen(request).status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)

    with serve_in_background(settings, store=sqlite_store) as base:
        threads = [threading.Thread(target=writer, args=(base,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert set(statuses) <= {200, 409} and statuses.count(200) > 0
    _snapshot_matches(sqlite_store)


_CHILD = """
import sys
from tasks.core.settings import load_settings
from tasks.registry.store import RegistryStore
store = RegistryStore.from_settings(load_settings())
print("ready", flush=True)
i = 0
while True:
    current = store.get("support-summarize").version
    store.rollback("support-summarize", actor="child", reason=f"swing {i}", to_version=3 - current)
    i += 1
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_settings(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Settings]:
    """Settings whose registry is the default SQLite file, or a PostgreSQL database of its own
    (``registry_kill_<hex>``, dropped afterwards): a child process opens it by settings alone."""
    if request.param == "sqlite":
        yield settings
        return
    import psycopg

    base = request.getfixturevalue("pg_url")
    name = f"registry_kill_{uuid.uuid4().hex[:10]}"
    admin = base.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield dataclasses.replace(settings, registry_url=base.rsplit("/", 1)[0] + "/" + name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow  # ~1.8 s per store: a writer process killed, then a restart
def test_kill_between_commit_and_snapshot_is_repaired_on_restart(
    own_settings: Settings, make_config: Any
) -> None:
    settings = own_settings
    store = RegistryStore.from_settings(settings)  # on either backend
    _seed_two(store, make_config)
    # a writer that commits without writing the snapshot: what a crash right after commit leaves
    blind = RegistryStore(store.url, snapshot_dir=None)
    blind.rollback(UC, actor="blind", reason="commit, then crash", to_version=1)
    blind.dispose()
    path = store.snapshot_file(UC)
    assert path is not None and json.loads(path.read_bytes())["version"] == 2  # stale
    leftover = path.parent / f".{path.name}.x1y2z3.tmp"
    leftover.write_bytes(b'{"half": ')
    restarted = RegistryStore.from_settings(settings)  # what server, CLI and nightly open with
    assert json.loads(path.read_bytes())["version"] == 1 and not leftover.exists()
    _snapshot_matches(restarted)
    # and for real: kill -9 a writer at random points, then restart
    env = {**os.environ, **settings_env(settings)}
    rng = random.Random(7)
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.2, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        again = RegistryStore.from_settings(settings)
        _snapshot_matches(again)
        again.dispose()
    assert len([e for e in restarted.history(UC) if e.actor == "child"]) > 3
    restarted.dispose()
    store.dispose()


def test_postgresql_documents_never_contradict_their_aliases(
    pg_store: RegistryStore, make_config: Any
) -> None:
    _seed_two(pg_store, make_config)
    stop = threading.Event()
    checked: list[int] = []
    bad: list[tuple[Any, ...]] = []

    def writer() -> None:
        while not stop.is_set():
            _swing(pg_store, 1, [])

    def reader() -> None:
        while not stop.is_set():
            for ref in ("1", "2", "production", 1, 2):
                doc = pg_store.get(UC, ref)
                in_production = "production" in doc.aliases
                if (doc.state.value == "production") != in_production:
                    bad.append((ref, doc.version, doc.state.value, doc.aliases))
                checked.append(1)
            for doc in pg_store.versions_of(UC):
                if (doc.state.value == "production") != ("production" in doc.aliases):
                    bad.append(("versions_of", doc.version, doc.state.value, doc.aliases))

    threads = [threading.Thread(target=writer) for _ in range(2)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30  # a busy machine gets more time, not a weaker check
    while time.monotonic() < deadline and (len(checked) < 500 or _moves(pg_store) < 20):
        time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join()
    assert _moves(pg_store) >= 20 and len(checked) >= 500
    assert bad == []


def _moves(store: RegistryStore) -> int:
    return sum(e.action == "rollback" for e in store.history(UC))


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_snapshot_mode_is_repaired_to_world_readable(
    settings: Settings, sqlite_store: RegistryStore, make_config: Any, mode: int
) -> None:
    _seed_two(sqlite_store, make_config)
    path = sqlite_store.snapshot_file(UC)
    assert path is not None
    path.chmod(mode)  # e.g. written by the old mkstemp code
    RegistryStore.from_settings(settings).dispose()
    assert path.stat().st_mode & 0o777 == 0o644
