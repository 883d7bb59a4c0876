"""The store on SQLite (default) and PostgreSQL: versions, lifecycle, audit, concurrency."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest

from tasks.core.settings import REPO_ROOT, Settings
from tasks.registry.model import ConfigState, ConfigValidationError
from tasks.registry.snapshot import read_snapshot
from tasks.registry.store import (
    InvalidTransitionError,
    NotFoundError,
    RegistryStore,
    StaleVersionError,
)

UC = "support-summarize"


def _publish(store: RegistryStore, make_config: Any, n: int, **kwargs: Any) -> None:
    for i in range(n):
        store.publish(
            UC,
            make_config(temperature=0.1 * (i + 1)),
            expected_version=store.latest_version(UC),
            actor="nightly",
            reason=f"v{i + 1}",
            run_id=f"run-{i + 1}",
            evidence={"quality": 0.7 + 0.01 * i, "cost_per_request": 0.01 - 0.001 * i},
            **kwargs,
        )


def test_versions_count_per_use_case_and_stale_publish_writes_nothing(
    any_store: RegistryStore, make_config: Any
) -> None:
    first = any_store.publish(
        UC, make_config(), expected_version=0, actor="a", reason="r", run_id="mlflow-1"
    )
    assert (first.version, first.state, first.aliases) == (
        1,
        ConfigState.CANDIDATE,
        ("candidate", "latest"),
    )
    assert first.run_id == "mlflow-1" and first.checksum == make_config().checksum
    other = any_store.publish(
        "ticket-classify", make_config("ticket-classify"), expected_version=0, actor="a", reason="r"
    )
    assert other.version == 1
    before = any_store.history(UC)
    with pytest.raises(StaleVersionError, match="expected latest version 0"):
        any_store.publish(UC, make_config(), expected_version=0, actor="a", reason="r")
    assert any_store.latest_version(UC) == 1
    assert any_store.history(UC) == before
    with pytest.raises(ConfigValidationError, match="not 'support-summarize'"):
        any_store.publish(
            UC, make_config("ticket-classify"), expected_version=1, actor="a", reason="r"
        )
    with pytest.raises(ConfigValidationError, match="actor"):
        any_store.publish(UC, make_config(), expected_version=1, actor="", reason="r")
    assert any_store.latest_version(UC) == 1
    assert sorted(any_store.use_cases()) == ["support-summarize", "ticket-classify"]


def test_lifecycle_aliases_audit_and_rollback(any_store: RegistryStore, make_config: Any) -> None:
    store = any_store
    _publish(store, make_config, 3)
    with pytest.raises(InvalidTransitionError, match="cannot promote a candidate"):
        store.promote(UC, 1, actor="ops", comment="too early")
    store.approve(UC, 1, actor="alice", comment="looks good")
    v1 = store.promote(UC, 1, actor="alice", comment="ship")
    assert v1.state is ConfigState.PRODUCTION and "production" in v1.aliases
    store.approve(UC, 2, actor="bob", comment="ok")
    store.promote(UC, 2, actor="bob", comment="ship 2")
    assert store.get(UC, 1).state is ConfigState.RETIRED
    assert store.get(UC).version == 2
    store.reject(UC, 3, actor="carol", comment="cost too high")
    with pytest.raises(InvalidTransitionError):
        store.approve(UC, 3, actor="carol", comment="changed my mind")
    with pytest.raises(InvalidTransitionError, match="rollback a rejected"):
        store.rollback(UC, to_version=3, actor="ops", reason="no")
    with pytest.raises(NotFoundError, match="candidate"):
        store.get(UC, "candidate")

    rolled = store.rollback(UC, actor="ops", reason="quality dropped on v2")
    assert (rolled.version, rolled.state) == (1, ConfigState.PRODUCTION)
    assert store.get(UC, 2).state is ConfigState.RETIRED
    trail = [(e.version, e.action, e.from_state, e.to_state, e.actor) for e in store.history(UC)]
    assert trail[-2:] == [
        (2, "retire", "production", "retired", "ops"),
        (1, "rollback", "retired", "production", "ops"),
    ]
    assert store.history(UC)[-1].reason == "quality dropped on v2"
    assert [e.action for e in store.history(UC)].count("publish") == 3
    # payloads never change, whatever happened to their state
    assert [v.checksum for v in store.versions_of(UC)] == [
        make_config(temperature=0.1 * (i + 1)).checksum for i in range(3)
    ]
    # rollback forward again to v2 (a retired, once-approved version) is allowed
    assert store.rollback(UC, to_version=2, actor="ops", reason="v1 worse").version == 2


def test_last_good_and_cheapest_approved(any_store: RegistryStore, make_config: Any) -> None:
    store = any_store
    assert store.last_good_approved(UC) is None
    _publish(store, make_config, 4)
    for version in (1, 2, 3):
        store.approve(UC, version, actor="a", comment="ok")
    store.promote(UC, 3, actor="a", comment="ship")
    store.reject(UC, 2, actor="a", comment="no")
    good = store.last_good_approved(UC, before=3)
    assert good is not None and good.version == 1
    # evidence: quality 0.70, 0.71, 0.72, 0.73 and cost 0.010, 0.009, 0.008, 0.007
    cheapest = store.cheapest_approved_meeting(UC, min_quality=0.705)
    assert cheapest is not None and cheapest.version == 3  # v2 rejected, v4 never approved
    assert store.cheapest_approved_meeting(UC, min_quality=0.9) is None


def test_promote_with_expected_production_is_optimistic(
    any_store: RegistryStore, make_config: Any
) -> None:
    _publish(any_store, make_config, 2)
    any_store.approve(UC, 1, actor="a", comment="ok")
    any_store.approve(UC, 2, actor="a", comment="ok")
    any_store.promote(UC, 1, actor="a", comment="x", expected_production=None, check_expected=True)
    with pytest.raises(StaleVersionError, match="expected production version None"):
        any_store.promote(
            UC, 2, actor="a", comment="x", expected_production=None, check_expected=True
        )
    assert any_store.get(UC).version == 1


def test_concurrent_publishers_exactly_one_wins(any_store: RegistryStore, make_config: Any) -> None:
    any_store.publish(UC, make_config(), expected_version=0, actor="a", reason="seed")
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def publisher(i: int) -> None:
        barrier.wait()
        try:
            any_store.publish(
                UC,
                make_config(temperature=0.1 * i),
                expected_version=1,
                actor=f"w{i}",
                reason="race",
            )
            outcomes.append("won")
        except StaleVersionError:
            outcomes.append("stale")

    threads = [threading.Thread(target=publisher, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["stale"] * 5 + ["won"]
    assert any_store.latest_version(UC) == 2
    assert [v.version for v in any_store.versions_of(UC)] == [1, 2]


def test_snapshot_follows_production(sqlite_store: RegistryStore, make_config: Any) -> None:
    store = sqlite_store
    _publish(store, make_config, 2)
    path = store.snapshot_file(UC)
    assert path is not None and not path.exists()
    store.approve(UC, 1, actor="a", comment="ok")
    store.promote(UC, 1, actor="a", comment="ship")
    assert read_snapshot(path).version == 1
    store.approve(UC, 2, actor="a", comment="ok")
    store.promote(UC, 2, actor="a", comment="ship")
    snap = read_snapshot(path)
    assert (snap.version, snap.checksum) == (2, store.get(UC).checksum)
    assert not list(path.parent.glob(".*.tmp"))  # no temp files left behind
    assert path.stat().st_mode & 0o777 == 0o644  # readable by a serving user


_WRITER = """
import sys
from tasks.registry.model import ModelParams, RegistryConfig
from tasks.registry.store import RegistryStore, StaleVersionError
store = RegistryStore(sys.argv[1])
me, done = sys.argv[2], 0
while done < 15:
    latest = store.latest_version("uc")
    cfg = RegistryConfig(use_case="uc", params=ModelParams(model="m", prompt_id=f"{me}-{done}"))
    try:
        store.publish("uc", cfg, expected_version=latest, actor=me, reason="race")
        done += 1
    except StaleVersionError:
        pass
"""


def test_sqlite_wal_across_processes_loses_nothing(settings: Settings) -> None:
    url = settings.registry_url
    RegistryStore(url).dispose()  # create tables before the race
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, url, f"p{i}"], cwd=REPO_ROOT)
        for i in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    store = RegistryStore(url)
    versions = store.versions_of("uc")
    assert [v.version for v in versions] == list(range(1, 46))
    prompts = {v.config.params.prompt_id for v in versions}
    assert prompts == {f"p{i}-{k}" for i in range(3) for k in range(15)}
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.dispose()
