"""Real services for end-to-end tests, started by the test run on 127.0.0.1 and always stopped.

``services.start_prefect`` / ``services.start_mlflow`` start ``prefect server start`` and
``mlflow server`` on free loopback ports with their own state directories (SQLite), or on fresh
PostgreSQL databases (``services.postgres_database``) for the shared-deployment variant; each test
starts the servers it needs, on the backend it tests. ``prefect_server`` is one Prefect server
(SQLite) for the session. A server that does not answer its health endpoint in time fails the
test with the tail of its log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 150.0


@dataclass(frozen=True)
class Service:
    url: str
    log: Path
    env: dict[str, str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, expect: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if expect in response.read().decode():
                return
        time.sleep(1.0)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise RuntimeError(f"service at {url} did not become healthy (exit={proc.poll()}):\n{tail}")


@contextlib.contextmanager
def spawn(
    cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in its own process group, output to ``log``; the whole group is stopped after."""
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("wb")
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield proc
    finally:
        _stop_group(proc)
        handle.close()


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL whatever is left of it after 30 s.

    The group is waited on, not only its leader: a script's background children (a walkthrough's
    ``prefect worker``) outlive the script itself and must not outlive the test.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
        try:
            os.killpg(proc.pid, 0)  # anyone left in the group?
        except ProcessLookupError:
            return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@contextlib.contextmanager
def _running(
    cmd: list[str], env: dict[str, str], log: Path, health: str, expect: str
) -> Iterator[None]:
    with spawn(cmd, env, log) as proc:
        _wait_healthy(health, expect, proc, log)
        yield


@contextlib.contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database (name only), dropped afterwards; callers request ``pg_url``."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _base_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_UI_ENABLED="false",
    )
    env.pop("PREFECT_API_URL", None)
    return env


@contextlib.contextmanager
def start_prefect(home: Path, database_url: str | None = None) -> Iterator[Service]:
    port = free_port()
    env = _base_env(home)
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    log = home / "prefect-server.log"
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/api"
    with _running(cmd, env, log, f"{url}/health", "true"):
        yield Service(url, log, {**env, "PREFECT_API_URL": url})


@contextlib.contextmanager
def start_mlflow(home: Path, backend_uri: str | None = None) -> Iterator[Service]:
    port = free_port()
    artifacts = home / "mlflow-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    backend = backend_uri or f"sqlite:///{home / 'mlflow-server.db'}"
    log = home / "mlflow-server.log"
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        str(artifacts),
        "--workers",
        "1",
    ]
    url = f"http://127.0.0.1:{port}"
    # MLflow's job runner (a huey consumer per job queue, each importing mlflow) serves features
    # this project does not use; without it the server starts with a fraction of the CPU
    env = {**_base_env(home), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with _running(cmd, env, log, f"{url}/health", "OK"):
        yield Service(url, log, {"MLFLOW_TRACKING_URI": url})


@pytest.fixture(scope="session")
def services() -> SimpleNamespace:
    """The service starters, for tests that need their own instances or backends."""
    return SimpleNamespace(
        start_prefect=start_prefect,
        start_mlflow=start_mlflow,
        postgres_database=postgres_database,
        spawn=spawn,
        free_port=free_port,
        base_env=_base_env,
    )


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A Prefect server (SQLite, its own home) for the session.

    Session scope on purpose: a flow run in this process binds Prefect's process-wide events
    worker to the server's URL, and the flow tests' ``prefect_test_harness`` drains every events
    worker when it stops; with this server stopped after its module, that drain waited forever
    at the end of the session (seen 2026-12-01 in a clean-clone ``make test``).
    """
    home = tmp_path_factory.mktemp("e2e-prefect")
    with start_prefect(home) as service:
        yield service
        # and before it stops, this process's events and log workers bound to it are drained and
        # stopped, so no later drain waits on a server that is gone (imported here: only the
        # workers that ran an e2e flow in-process need it)
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        EventsWorker.drain_all(timeout=30)
        APILogWorker.drain_all(timeout=30)
    shutil.rmtree(home / "prefect", ignore_errors=True)
