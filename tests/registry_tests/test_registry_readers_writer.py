"""One writer process, the API in its own process, 20 reader threads (200 in the slow lane): no
torn reads, ever."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tasks.core.settings import REPO_ROOT, Settings
from tasks.registry.api import serve_in_subprocess
from tasks.registry.model import ConfigVersion, ModelParams, RegistryConfig
from tasks.registry.snapshot import read_snapshot
from tasks.registry.store import RegistryStore

UC = "support-summarize"
VERSIONS = 30

_WRITER = """
import sys
import time
from tasks.registry.model import Arm, ModelParams, RegistryConfig
from tasks.registry.store import RegistryStore
from tasks.core.settings import load_settings
store = RegistryStore.from_settings(load_settings())
print("ready", flush=True)  # imported and connected: the test starts its readers, then says go
sys.stdin.read()
for i in range(int(sys.argv[1])):
    n = 2 + i % 5  # vary the size of the payload so a torn write would show
    arms = tuple(
        Arm(arm_id=f"arm-{k}", params=ModelParams(model="gpt-4o-mini", prompt_id=f"p{i}-{k}"),
            weight=1.0 / n)
        for k in range(n)
    )
    cfg = RegistryConfig(use_case="support-summarize", params=ModelParams(model="gpt-4o"),
                         traffic=arms, metadata={"filler": "x" * (1000 * (i % 7))})
    latest = store.latest_version("support-summarize")
    v = store.publish("support-summarize", cfg, expected_version=latest, actor="writer",
                      reason=f"round {i}")
    store.approve("support-summarize", v.version, actor="writer", comment="ok")
    store.promote("support-summarize", v.version, actor="writer", comment="ship")
    # a quiet machine published all 30 inside one of the API's 0.25 s refreshes, and the HTTP
    # readers saw only the first and the last version: the writes span about six refreshes
    time.sleep(0.05)
"""


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "LLMOPT_HOME": str(settings.home),
        "LLMOPT_CONFIG_DIR": str(settings.config_dir),
    }


def _start_server(settings: Settings) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "registry", "serve", "--port", "0"],
        cwd=REPO_ROOT,
        env=_env(settings),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "registry API on http://127.0.0.1:PORT (Ctrl-C to stop)"
    assert "registry API on" in line, line
    return proc, int(line.split("http://127.0.0.1:")[1].split()[0])


class _Readers:
    """``count`` HTTP readers and as many snapshot-file readers, each checking that the version
    it reads never goes back; they run until :meth:`stop`."""

    def __init__(self, snapshot: Path, count: int) -> None:
        self.snapshot = snapshot
        self.errors: list[str] = []
        self.seen: dict[str, set[int]] = {"http": set(), "file": set()}
        self.reads = {"http": 0, "file": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._port = 0
        self._threads = [threading.Thread(target=self._http) for _ in range(count)]
        self._threads += [threading.Thread(target=self._file) for _ in range(count)]

    def start(self, port: int) -> None:
        self._port = port
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.ident is not None:  # started
                thread.join(timeout=60)

    def _check(self, kind: str, version: ConfigVersion, last: int) -> int:
        if version.version < last:
            self.errors.append(f"{kind}: version went back from {last} to {version.version}")
        with self._lock:
            self.seen[kind].add(version.version)
            self.reads[kind] += 1
        return version.version

    def _http(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
        last = 0
        try:
            while not self._stop.is_set():
                conn.request("GET", f"/v1/configs/{UC}")
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    self.errors.append(f"http status {response.status}")
                    return
                last = self._check("http", ConfigVersion.from_document(json.loads(body)), last)
                time.sleep(0.005)
        except Exception as exc:
            self.errors.append(f"http: {type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def _file(self) -> None:
        last = 0
        try:
            while not self._stop.is_set():
                last = self._check("file", read_snapshot(self.snapshot), last)
                time.sleep(0.002)
        except Exception as exc:
            self.errors.append(f"file: {type(exc).__name__}: {exc}")


def _write_versions(settings: Settings, readers: _Readers, port: int) -> None:
    """Run the writer process; the readers start once it has imported and connected (so they
    do not spin through its start-up), and it publishes when its stdin closes."""
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(VERSIONS)],
        cwd=REPO_ROOT,
        env=_env(settings),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdin is not None
        ready = writer.stdout.readline()
        readers.start(port)
        _, stderr = writer.communicate(timeout=300)  # closes its stdin: go
        assert ready == "ready\n" and writer.returncode == 0, stderr[-2000:]
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=30)


@pytest.mark.parametrize("readers", [10, pytest.param(100, marks=pytest.mark.slow)])
def test_readers_never_see_a_half_written_configuration(settings: Settings, readers: int) -> None:
    """``readers`` HTTP readers and as many snapshot-file readers while a writer publishes."""
    store = RegistryStore.from_settings(settings)
    seed = RegistryConfig(use_case=UC, params=ModelParams(model="gpt-4o-mini"))
    store.publish(UC, seed, expected_version=0, actor="seed", reason="seed")
    store.approve(UC, 1, actor="seed", comment="ok")
    store.promote(UC, 1, actor="seed", comment="ship")
    store.dispose()
    snapshot = settings.registry_snapshot_dir / f"{UC}.json"
    watch = _Readers(Path(snapshot), readers)
    with serve_in_subprocess(settings) as base_url:
        try:
            _write_versions(settings, watch, int(base_url.rsplit(":", 1)[1]))
            time.sleep(0.6)  # let HTTP readers pass the server's 0.25 s refresh interval
        finally:
            watch.stop()
    assert watch.errors == []
    final = VERSIONS + 1
    seen = watch.seen
    assert max(seen["http"]) == final and max(seen["file"]) == final
    # the readers really overlapped the writer: they saw intermediate versions
    assert len(seen["http"]) > 2 and len(seen["file"]) > 2, seen
    assert min(watch.reads.values()) > 2 * readers, watch.reads
    assert read_snapshot(snapshot).config.metadata["filler"] == "x" * (1000 * ((VERSIONS - 1) % 7))
    leftovers = [p.name for p in snapshot.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_api_process_reports_health_and_stops_on_sigterm(settings: Settings) -> None:
    server, port = _start_server(settings)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/health")
        response = conn.getresponse()
        body: dict[str, Any] = json.loads(response.read())
        assert (response.status, body) == (200, {"status": "ok", "use_cases": 0})
        conn.close()
    finally:
        server.terminate()
    assert server.wait(timeout=30) == 0
