"""Fixtures of the flow tests: one Prefect temporary server for the whole session.

Starting Prefect's test server takes seconds; the flow test modules share one instead of
starting their own (each flow run is still its own run, keyed by its parameters).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """Prefect's temporary server and database, up for the session."""
    # imported here: prefect.testing pulls in the whole Prefect server (~3 s per test process),
    # which the many flow tests that never start it (and every other worker) do not need
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
