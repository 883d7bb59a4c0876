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

    stop = threading.Event()
    errors: list[str] = []
    seen: dict[str, set[int]] = {"http": set(), "file": set()}
    reads = {"http": 0, "file": 0}
    lock = threading.Lock()

    def check(kind: str, version: ConfigVersion, last: int) -> int:
        if version.version < last:
            errors.append(f"{kind}: version went back from {last} to {version.version}")
        with lock:
            seen[kind].add(version.version)
            reads[kind] += 1
        return version.version

    def http_reader() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        last = 0
        try:
            while not stop.is_set():
                conn.request("GET", f"/v1/configs/{UC}")
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    errors.append(f"http status {response.status}")
                    return
                last = check("http", ConfigVersion.from_document(json.loads(body)), last)
                time.sleep(0.005)
        except Exception as exc:
            errors.append(f"http: {type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def file_reader() -> None:
        last = 0
        try:
            while not stop.is_set():
                last = check("file", read_snapshot(Path(snapshot)), last)
                time.sleep(0.002)
        except Exception as exc:
            errors.append(f"file: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=http_reader) for _ in range(readers)]
    threads += [threading.Thread(target=file_reader) for _ in range(readers)]
    with serve_in_subprocess(settings) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        # the writer imports and connects first, so the readers do not spin through its start-up
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
            for t in threads:
                t.start()
            _, stderr = writer.communicate(timeout=300)  # closes its stdin: go
            assert ready == "ready\n" and writer.returncode == 0, stderr[-2000:]
            time.sleep(0.6)  # let HTTP readers pass the server's 0.25 s refresh interval
        finally:
            stop.set()
            for t in threads:
                if t.ident is not None:  # started
                    t.join(timeout=60)
            if writer.poll() is None:
                writer.kill()
                writer.wait(timeout=30)
    assert errors == []
    final = VERSIONS + 1
    assert max(seen["http"]) == final and max(seen["file"]) == final
    # the readers really overlapped the writer: they saw intermediate versions
    assert len(seen["http"]) > 2 and len(seen["file"]) > 2, seen
    assert min(reads.values()) > 2 * readers, reads
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
