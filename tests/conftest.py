"""Fixtures every test folder shares: an isolated home, settings and an in-file warehouse.

Nothing here touches the developer's own ``data/`` or ``mlflow/``: every test gets a temporary
``LLMOPT_HOME``; Prefect gets its own ``PREFECT_HOME`` with telemetry off.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("MPLBACKEND", "Agg")
# Each test process (xdist worker) gets its own Prefect home: a shared SQLite file between the
# workers' temporary servers gives "database is locked".
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="llmopt-prefect-home-")

from tasks.core.settings import Settings, load_settings
from tasks.simulation.demo_config import DEMO_CONFIG_DIR

#: The longest modules of ``make test`` (measured 2026-12-01), longest first; see
#: :func:`pytest_collection_modifyitems`.
LONGEST_MODULES = (
    "e2e_tests/test_deploying_walkthrough.py",
    "e2e_tests/test_e2e_nightly.py",
)


def _module_rank(path: str, items: list[pytest.Item]) -> tuple[int, int]:
    """Where a module goes in the run: the known longest first, then modules with end-to-end
    tests, then modules with slow tests, then the rest."""
    for index, suffix in enumerate(LONGEST_MODULES):
        if path.endswith(suffix):
            return (0, index)
    if any(item.get_closest_marker("e2e") for item in items):
        return (1, 0)
    if any(item.get_closest_marker("slow") for item in items):
        return (2, 0)
    return (3, 0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks and order.

    A test that needs PostgreSQL (the ``pg_url`` fixture, directly or through another fixture)
    carries the ``postgres`` mark, so ``make test-fast`` leaves it out; a fixture that
    parametrizes over databases marks its PostgreSQL param itself.

    Whole modules are then put longest first (a stable sort: the order within a module, and
    pytest-randomly's shuffle when it is on, are kept). pytest-xdist hands work out in this
    order (``make test``: tests one by one with ``--dist load``; ``make test-fast``: whole modules
    with ``--dist loadfile --no-loadscope-reorder``), so a four-minute test starts at once instead
    of ending last on one worker while the other sits idle.
    """
    for item in items:
        if "pg_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    rank = {path: _module_rank(path, members) for path, members in modules.items()}
    items.sort(key=lambda item: rank[item.nodeid.split("::", 1)[0]])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with every location under a fresh temporary home; the demo's configuration.

    Tests run on simulated data, so they get the simulator's use-case settings
    (``tasks/simulation/demo_config``, falling back per file to the shipped ``data/config``).
    A test of a user's own configuration builds its settings with ``LLMOPT_CONFIG_DIR`` unset.
    """
    return load_settings(
        env={"LLMOPT_HOME": str(tmp_path), "LLMOPT_CONFIG_DIR": str(DEMO_CONFIG_DIR)}
    ).ensure_dirs()


@pytest.fixture
def warehouse(settings: Settings) -> Iterator[object]:
    """A DuckDB warehouse file with the schema applied, closed after the test."""
    from tasks.warehouse.connection import connect

    con = connect(settings)
    yield con
    con.close()


def postgres_url(database: str = "test") -> str | None:
    """URL of the PostgreSQL service, or None (CI=true turns absence into a failure)."""
    url = os.environ.get(
        "LLMOPT_TEST_POSTGRES_URL", f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
    )
    try:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), connect_timeout=3):
            return url
    except Exception as exc:
        if os.environ.get("CI") == "true":
            raise RuntimeError(
                f"PostgreSQL is required in CI but unreachable at {url}: {exc}"
            ) from exc
        return None


@pytest.fixture
def pg_url() -> str:
    """SQLAlchemy URL of the PostgreSQL test database; skips with a reason off CI."""
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432 (required when CI=true)")
    return url


def nights_with_late_rows(
    spec: Any,
    late_days: Collection[int],
    *,
    also: Callable[[int, Any], dict[int, list[Any]]] | None = None,
) -> dict[int, list[Any]]:
    """Per night, the simulated tables loaded that night: each day's rows on its own night,
    except an eighth of each late day's rows, which arrive three nights later (at the latest on
    the last night).

    Args:
        spec: the :class:`tasks.simulation.SimulationSpec` simulated.
        late_days: indexes of the days with late rows.
        also: ``also(day index, day table)``: more tables per night, added after the day's own.

    Returns:
        Night index -> its Arrow tables, in loading order.
    """
    import numpy as np
    import pyarrow as pa

    from tasks.simulation.generate import iter_simulation

    nights: dict[int, list[Any]] = {d: [] for d in range(spec.days)}
    for index, (_, table) in enumerate(iter_simulation(spec)):
        if index in late_days:
            late = np.array([hash(r) % 8 == 0 for r in table["request_id"].to_pylist()])
            nights[index].append(table.filter(pa.array(~late)))
            nights[min(index + 3, spec.days - 1)].append(table.filter(pa.array(late)))
        else:
            nights[index].append(table)
        for night, tables in (also(index, table) if also else {}).items():
            nights[night] += tables
    return nights


@pytest.fixture(scope="session")
def late_nights() -> Callable[..., dict[int, list[Any]]]:
    """:func:`nights_with_late_rows`: a simulated month loaded night by night, with late rows."""
    return nights_with_late_rows


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``run_cli(*argv)``: the ``llmopt`` command line in this process; (exit code, stdout,
    stderr), the output captured since the last read."""
    from flows.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run
