"""Where and how the registry server runs: the loopback rule, and a server in its own process.

``check_bind_host`` refuses to listen beyond loopback without an explicit ``--allow-remote``;
``serve_in_subprocess`` runs ``python -m tasks.registry.api`` for tests and the nightly flow.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tasks.core.settings import Settings
from tasks.registry.auth import tokens_path
from tasks.registry.errors import RegistryError

__all__ = ["check_bind_host", "serve_in_subprocess", "settings_env"]


def check_bind_host(host: str, *, allow_remote: bool) -> None:
    """Refuse to listen beyond loopback unless the operator said so explicitly.

    Args:
        host: the address to bind.
        allow_remote: the explicit ``--allow-remote`` flag.

    Raises:
        RegistryError: a one-line refusal naming the flag.
    """
    if host == "localhost" or allow_remote:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise RegistryError(
            f"refusing to serve the registry on {host} (beyond loopback) without --allow-remote"
        )


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that make another process resolve the same registry settings."""
    return {
        "LLMOPT_HOME": str(settings.home),
        "LLMOPT_CONFIG_DIR": str(settings.config_dir),
        "LLMOPT_REGISTRY_URL": settings.registry_url,
        "LLMOPT_REGISTRY_SNAPSHOT_DIR": str(settings.registry_snapshot_dir),
        "LLMOPT_REGISTRY_TOKENS_FILE": str(tokens_path(settings)),
    }


@contextmanager
def serve_in_subprocess(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    refresh_interval: float = 0.25,
    startup_timeout: float = 60.0,
) -> Iterator[str]:
    """Run the API in its own process (``python -m tasks.registry.api``); yields its base URL.

    Args:
        settings: resolved settings, passed on through the environment.
        host: address to bind.
        port: port (0: the child picks a free one and prints its URL, no race).
        refresh_interval: revision-check interval of the document cache.
        startup_timeout: seconds to wait for the URL.

    Yields:
        The base URL; the child gets SIGTERM on exit (killed after 10 s).
    """
    command = [sys.executable, "-m", "tasks.registry.api", "--host", host, "--port", str(port)]
    command += ["--refresh-interval", str(refresh_interval)]
    env = {**os.environ, **settings_env(settings)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        stdout = proc.stdout
        assert stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(startup_timeout)
        line = ready[0].strip() if ready else ""
        if not line.startswith("http://"):
            raise RuntimeError(f"registry API did not start (exit code {proc.poll()}): {line!r}")
        yield line
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
