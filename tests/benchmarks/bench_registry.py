"""Benchmark of the registry: client cache, HTTP API, snapshot, writes, with baselines.

Run: ``.venv/bin/python tests/benchmarks/bench_registry.py [--quick]``. Prints a markdown table
and writes ``data/benchmarks/registry.json`` (``registry.quick.json``) through the shared harness.

What is measured, in one run on this machine:

- client cached lookup (``RegistryClient.get`` inside its TTL) and ``assign`` (hash per arm);
- the client's lookup while its registry is hung (TTL expired, a background refresh stuck on a
  socket that never answers): what a serving process pays during an outage;
- the HTTP API, started as its own process (``llmopt registry serve``), driven by a bounded
  thread load generator on keep-alive connections: closed loop (max throughput) and paced at
  1,000 requests/s. Paced latency is reported twice: from when the request was sent, and from
  when it was *scheduled* to be sent (a generator that falls behind its schedule shows up there:
  no coordinated omission); plus conditional GETs answered 304;
- a write (rollback: one transaction, audit rows, then the snapshot re-derived under its lock)
  beside a raw ``sqlite3`` UPDATE + COMMIT on the same WAL database;
- baselines in the same run: a bare stdlib ``http.server`` returning the same bytes, a raw
  ``sqlite3`` read of the stored payload, and reading + validating the snapshot file.

The load generator shares the 2 cores with the server, so throughput figures are a lower bound.
"""

from __future__ import annotations

import http.client
import os
import socket
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

from harness import bench_parser, markdown_table, peak_rss_mib, write_result

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
    clock = time.perf_counter
    stop_at = clock() + seconds
    latencies: list[float] = []
    from_schedule: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    interval = None if rate is None else threads / rate

    def worker(offset: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine: list[float] = []
        mine_sched: list[float] = []
        mine_status: dict[int, int] = {}
        next_at = clock() + offset
        while True:
            scheduled = next_at
            if interval is not None:
                delay = next_at - clock()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval
            if clock() >= stop_at:
                break
            start = clock()
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            response.read()
            end = clock()
            mine.append(end - start)
            mine_sched.append(end - (scheduled if interval is not None else start))
            mine_status[response.status] = mine_status.get(response.status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            from_schedule.extend(mine_sched)
            for k, v in mine_status.items():
                statuses[k] = statuses.get(k, 0) + v

    pool = [
        threading.Thread(target=worker, args=(0 if interval is None else i * interval / threads,))
        for i in range(threads)
    ]
    started = clock()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = clock() - started
    return {
        "requests": len(latencies),
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(_pct(latencies, 0.5) * 1000, 3),
        "p99_ms": round(_pct(latencies, 0.99) * 1000, 3),
        "p99_from_schedule_ms": round(_pct(from_schedule, 0.99) * 1000, 3),
        "max_ms": round(max(latencies) * 1000, 3),
        "max_from_schedule_ms": round(max(from_schedule) * 1000, 3),
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
        results["server_peak_rss_mib"] = round(peak_rss_mib(children=True), 1)
        results["client_lookup_hung_registry"] = _hung_lookup(client, n // 10)

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
        results.update(_writes(settings, 50 if quick else 300))
    results["loadgen_peak_rss_mib"] = round(peak_rss_mib(), 1)
    return results


def _hung_lookup(client: RegistryClient, n: int) -> dict[str, float]:
    """Lookups after the TTL while the registry accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.listen(64)
    client.base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    client.ttl_seconds, client.timeout = 0.0, 1.0
    try:
        figures = _micro(lambda: client.lookup(UC), n)
        client.wait_for_refreshes(5)  # the one refresh in flight times out after 1 s
        figures["refresh_failures"] = float(client.counters["refresh_failures"])
    finally:
        listener.close()
    return figures


def _writes(settings: Any, n: int) -> dict[str, Any]:
    """A rollback (transaction + audit + snapshot under its lock) against a raw UPDATE+COMMIT."""
    store = RegistryStore.from_settings(settings)
    config = store.get(UC).config
    store.publish(UC, config, expected_version=1, actor="bench", reason="second")
    store.approve(UC, 2, actor="bench", comment="ok")
    store.promote(UC, 2, actor="bench", comment="ship")
    state = {"current": 2}

    def swing() -> None:
        target = 3 - state["current"]
        store.rollback(UC, actor="bench", reason="swing", to_version=target)
        state["current"] = target

    figures = {"write_rollback_with_snapshot": _micro(swing, n)}
    store.dispose()
    db = sqlite3.connect(settings.registry_url.removeprefix("sqlite:///"), isolation_level=None)
    db.execute("PRAGMA synchronous=NORMAL")

    def raw_update() -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE registry_heads SET revision = revision + 1 WHERE use_case = ?", (UC,))
        db.execute("COMMIT")

    figures["baseline_raw_sqlite_update_commit"] = _micro(raw_update, n)
    db.close()
    return figures


def _table(r: dict[str, Any]) -> str:
    rows: list[dict[str, Any]] = []
    for key in ("client_cached_get", "client_assign", "client_lookup_hung_registry",
                "snapshot_read_validate", "baseline_raw_sqlite_read",
                "write_rollback_with_snapshot", "baseline_raw_sqlite_update_commit"):  # fmt: skip
        m = r[key]
        rows.append({"measurement": key, "req/s": "-", "p50": f"{m['p50_us']} µs",
                     "p99": f"{m['p99_us']} µs", "p99 from schedule": "-"})  # fmt: skip
    for key in ("http_closed_loop", "http_paced_1000", "http_304_closed_loop",
                "baseline_stdlib_http_closed_loop"):  # fmt: skip
        m = r[key]
        paced = f"{m['p99_from_schedule_ms']} ms" if m["target_rps"] else "-"
        rows.append({"measurement": key, "req/s": m["throughput_rps"], "p50": f"{m['p50_ms']} ms",
                     "p99": f"{m['p99_ms']} ms", "p99 from schedule": paced})  # fmt: skip
    return markdown_table(rows) + (
        f"\n\nserver peak RSS {r['server_peak_rss_mib']} MiB, load generator peak RSS "
        f"{r['loadgen_peak_rss_mib']} MiB, document {r['document_bytes']} bytes, "
        f"{r['cpus']} CPUs, quick={r['quick']}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the result file.

    Args:
        argv: command-line arguments (``--quick``, ``--out``).

    Returns:
        The exit code.
    """
    args = bench_parser(__doc__).parse_args(argv)
    results = run(quick=args.quick)
    path = write_result("registry", results, quick=args.quick, out=args.out)
    print(_table(results))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
