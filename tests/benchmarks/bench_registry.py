"""Benchmark of the registry read path: client cache, HTTP API, snapshot, with baselines.

Run: ``.venv/bin/python tests/benchmarks/bench_registry.py [--quick]``. Prints a markdown table
and writes ``data/benchmarks/registry.json``.

What is measured, in one run on this machine:

- client cached lookup (``RegistryClient.get`` inside its TTL) and ``assign`` (hash per arm);
- the HTTP API, started as its own process (``llmopt registry serve``), driven by a bounded
  thread load generator on keep-alive connections: closed loop (max throughput) and paced at
  1,000 requests/s (latency at the target load), plus conditional GETs answered 304;
- baselines in the same run: a bare stdlib ``http.server`` returning the same bytes, a raw
  ``sqlite3`` read of the stored payload, and reading + validating the snapshot file.

The load generator shares the 2 cores with the server, so throughput figures are a lower bound.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.core.settings import REPO_ROOT, load_settings
from tasks.registry.client import RegistryClient
from tasks.registry.model import Arm, ModelParams, RegistryConfig
from tasks.registry.snapshot import read_snapshot
from tasks.registry.store import RegistryStore

__all__ = ["main", "run"]

UC = "support-summarize"


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _micro(fn: Callable[[], object], n: int) -> dict[str, float]:
    """Per-call latency in microseconds, each call timed on its own."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        start = clock()
        fn()
        samples.append((clock() - start) / 1000.0)
    return {
        "calls": n,
        "p50_us": round(_pct(samples, 0.5), 3),
        "p99_us": round(_pct(samples, 0.99), 3),
        "mean_us": round(statistics.fmean(samples), 3),
    }


def _load(
    port: int,
    path: str,
    *,
    seconds: float,
    threads: int,
    rate: float | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Closed loop (``rate=None``) or paced at ``rate`` requests/s in total; keep-alive."""
    stop_at = time.monotonic() + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    interval = None if rate is None else threads / rate

    def worker(offset: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine: list[float] = []
        mine_status: dict[int, int] = {}
        next_at = time.monotonic() + offset
        while True:
            if interval is not None:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval
            if time.monotonic() >= stop_at:
                break
            start = time.perf_counter()
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - start)
            mine_status[response.status] = mine_status.get(response.status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for k, v in mine_status.items():
                statuses[k] = statuses.get(k, 0) + v

    pool = [
        threading.Thread(target=worker, args=(0 if interval is None else i * interval / threads,))
        for i in range(threads)
    ]
    started = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - started
    return {
        "requests": len(latencies),
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(_pct(latencies, 0.5) * 1000, 3),
        "p99_ms": round(_pct(latencies, 0.99) * 1000, 3),
        "max_ms": round(max(latencies) * 1000, 3),
        "threads": threads,
        "target_rps": rate or 0,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


_BARE_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
body = open(sys.argv[1], "rb").read()
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        self.send_response_only(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def _start(command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    """Start a server process that prints its port (or a URL with it) on its first line."""
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    port = line.split("http://127.0.0.1:")[1].split()[0] if "http://" in line else line
    return proc, int(port)


def _seed(home: Path) -> dict[str, str]:
    env = {
        "LLMOPT_HOME": str(home),
        "LLMOPT_CONFIG_DIR": str(REPO_ROOT / "tasks" / "simulation" / "demo_config"),
    }
    settings = load_settings(env=env).ensure_dirs()
    store = RegistryStore.from_settings(settings)
    arms = tuple(
        Arm(
            arm_id=name,
            params=ModelParams(model="gpt-4o-mini", prompt_id=prompt, temperature=0.3),
            weight=weight,
            role=role,
            experiment_id="exp-summarize-prompt-v2" if role == "experiment" else None,
        )
        for name, prompt, weight, role in (
            ("production", "summarize-v1", 0.8, "production"),
            ("control", "summarize-v1", 0.075, "experiment"),
            ("treatment", "summarize-v2", 0.075, "experiment"),
            ("explore-1", "summarize-v3", 0.05, "exploration"),
        )
    )
    config = RegistryConfig(
        use_case=UC, params=ModelParams(model="gpt-4o-mini", prompt_id="summarize-v1"), traffic=arms
    )
    store.publish(UC, config, expected_version=0, actor="bench", reason="bench")
    store.approve(UC, 1, actor="bench", comment="ok")
    store.promote(UC, 1, actor="bench", comment="ship")
    store.dispose()
    return {**os.environ, **env}


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 3.0 if quick else 10.0
    results: dict[str, Any] = {"quick": quick, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = _seed(home)
        settings = load_settings(env={k: v for k, v in env.items() if k.startswith("LLMOPT_")})
        server, port = _start(
            [sys.executable, "-m", "flows.cli", "registry", "serve", "--port", "0"], env
        )
        try:
            base = f"http://127.0.0.1:{port}"
            client = RegistryClient(base, ttl_seconds=3600)
            client.get(UC)
            n = 50_000 if quick else 200_000
            results["client_cached_get"] = _micro(lambda: client.get(UC), n)
            units = iter(range(10**9))
            results["client_assign"] = _micro(lambda: client.assign(UC, f"u{next(units)}"), n // 5)
            path = f"/v1/configs/{UC}"
            conn = http.client.HTTPConnection("127.0.0.1", port)
            conn.request("GET", path)
            response = conn.getresponse()
            body, etag = response.read(), response.headers["ETag"]
            conn.close()
            results["document_bytes"] = len(body)
            results["http_closed_loop"] = _load(port, path, seconds=seconds, threads=4)
            results["http_paced_1000"] = _load(port, path, seconds=seconds, threads=4, rate=1000)
            results["http_304_closed_loop"] = _load(
                port, path, seconds=seconds, threads=4, headers={"If-None-Match": etag}
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
        results["server_peak_rss_mib"] = round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        )

        body_file = home / "body.json"
        body_file.write_bytes(body)
        bare, bare_port = _start([sys.executable, "-c", _BARE_SERVER, str(body_file)], env)
        try:
            results["baseline_stdlib_http_closed_loop"] = _load(
                bare_port, path, seconds=seconds, threads=4
            )
        finally:
            bare.terminate()
            bare.wait(timeout=30)

        db = sqlite3.connect(settings.registry_url.removeprefix("sqlite:///"))
        query = "SELECT payload FROM registry_versions WHERE use_case = ? AND version = 1"
        results["baseline_raw_sqlite_read"] = _micro(
            lambda: db.execute(query, (UC,)).fetchone(), 20_000
        )
        db.close()
        snap = settings.registry_snapshot_dir / f"{UC}.json"
        results["snapshot_read_validate"] = _micro(lambda: read_snapshot(snap), 5_000)
    results["loadgen_peak_rss_mib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    return results


def _table(r: dict[str, Any]) -> str:
    rows = ["| measurement | throughput (req/s) | p50 | p99 |", "|---|---|---|---|"]
    for key in ("client_cached_get", "client_assign", "baseline_raw_sqlite_read"):
        m = r[key]
        rows.append(f"| {key} | - | {m['p50_us']} µs | {m['p99_us']} µs |")
    m = r["snapshot_read_validate"]
    rows.append(f"| snapshot_read_validate | - | {m['p50_us']} µs | {m['p99_us']} µs |")
    for key in (
        "http_closed_loop",
        "http_paced_1000",
        "http_304_closed_loop",
        "baseline_stdlib_http_closed_loop",
    ):
        m = r[key]
        rows.append(f"| {key} | {m['throughput_rps']} | {m['p50_ms']} ms | {m['p99_ms']} ms |")
    rows.append(
        f"\nserver peak RSS {r['server_peak_rss_mib']} MiB, load generator peak RSS "
        f"{r['loadgen_peak_rss_mib']} MiB, document {r['document_bytes']} bytes, "
        f"{r['cpus']} CPUs, quick={r['quick']}"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter runs (about 15 s)")
    args = parser.parse_args(argv)
    results = run(quick=args.quick)
    out = REPO_ROOT / "data" / "benchmarks" / "registry.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(_table(results))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
