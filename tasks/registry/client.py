"""The serving-side client: cached, conditional, and still answering when the registry is down.

Standard library only (``urllib``), so a serving process imports it without Prefect, DuckDB,
MLflow, SQLAlchemy or pandas. Behaviour:

- ``get(use_case)`` returns the production :class:`ConfigVersion` from memory while it is younger
  than ``ttl_seconds`` (a dict lookup: no I/O, no lock);
- after the TTL it revalidates with ``If-None-Match``: a 304 only refreshes the timestamp;
- every payload is validated and its checksum verified; a good one is also written atomically to
  ``cache_dir`` as the last-known-good copy;
- when the registry is unreachable, times out, or answers garbage, the client keeps serving the
  last good configuration (memory first, then disk, e.g. after a restart) and records why in
  ``last_error``; only when it has never seen a good one does it raise
  :class:`RegistryUnavailableError`.

Example (needs a running registry)::

    client = RegistryClient("http://127.0.0.1:8765", cache_dir=Path("/var/cache/llmopt"))
    chosen = client.assign("support-summarize", unit_id="user-42")
    call_llm(**chosen.arm.params.to_dict()); log(config_id=chosen.config_id)
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.errors import LlmoptError
from tasks.core.settings import Settings
from tasks.registry.assignment import assign_arm
from tasks.registry.model import Arm, ConfigValidationError, ConfigVersion, validate_use_case
from tasks.registry.snapshot import atomic_write_bytes, read_snapshot, snapshot_path

__all__ = ["Assignment", "RegistryClient", "RegistryUnavailableError"]

MAX_RESPONSE_BYTES = 4 << 20


class RegistryUnavailableError(LlmoptError, RuntimeError):
    """No configuration can be served: the registry failed and no last-known-good copy exists."""


@dataclass(frozen=True)
class Assignment:
    """What to call for one unit, and what to log beside the call."""

    use_case: str
    version: int
    arm: Arm
    config_id: str

    @property
    def propensity(self) -> float:
        return self.arm.weight


@dataclass
class _Entry:
    version: ConfigVersion
    etag: str | None
    fetched_at: float


class RegistryClient:
    """Read production configurations from the registry HTTP API (see module docstring)."""

    def __init__(
        self,
        base_url: str,
        *,
        ttl_seconds: float = 5.0,
        timeout: float = 2.0,
        cache_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ttl_seconds = ttl_seconds
        self.timeout = timeout
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.last_source: str = "none"
        self.last_error: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> RegistryClient:
        """A client for ``settings.registry_api_url``; last-known-good copies under the home."""
        kwargs.setdefault("cache_dir", settings.home / "data" / "registry-client-cache")
        return cls(settings.registry_api_url, **kwargs)

    def get(self, use_case: str) -> ConfigVersion:
        """The production configuration of ``use_case`` (cached for ``ttl_seconds``)."""
        entry = self._entries.get(use_case)
        if entry is not None and self._clock() - entry.fetched_at < self.ttl_seconds:
            self.last_source = "cache"
            return entry.version
        with self._lock:  # one revalidation at a time; others reuse its result
            entry = self._entries.get(use_case)
            if entry is not None and self._clock() - entry.fetched_at < self.ttl_seconds:
                return entry.version
            return self._refresh(validate_use_case(use_case), entry)

    def assign(self, use_case: str, unit_id: str) -> Assignment:
        """The arm serving ``unit_id``: the same answer in every process (see assignment.py)."""
        version = self.get(use_case)
        arm = assign_arm(version.config, unit_id)
        config_id = arm.config_id or f"{use_case}/v{version.version}/{arm.arm_id}"
        return Assignment(use_case, version.version, arm, config_id)

    def _refresh(self, use_case: str, entry: _Entry | None) -> ConfigVersion:
        request = urllib.request.Request(
            f"{self.base_url}/v1/configs/{use_case}", headers={"Accept": "application/json"}
        )
        if entry is not None and entry.etag:
            request.add_header("If-None-Match", entry.etag)
        try:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read(MAX_RESPONSE_BYTES + 1)
                    etag = response.headers.get("ETag")
            except urllib.error.HTTPError as exc:
                if exc.code == 304 and entry is not None:
                    entry.fetched_at = self._clock()
                    self.last_source, self.last_error = "not-modified", None
                    return entry.version
                raise
            if len(raw) > MAX_RESPONSE_BYTES:
                raise ConfigValidationError("response too large")
            version = ConfigVersion.from_document(json.loads(raw))
            if version.use_case != use_case:
                raise ConfigValidationError(f"asked for {use_case!r}, got {version.use_case!r}")
        except (OSError, ValueError) as exc:  # URLError, timeouts, HTTP errors, bad JSON/payload
            return self._fallback(use_case, entry, exc)
        self._entries[use_case] = _Entry(version, etag, self._clock())
        self.last_source, self.last_error = "network", None
        if self.cache_dir is not None:
            try:
                atomic_write_bytes(snapshot_path(self.cache_dir, use_case), raw)
            except OSError as exc:  # a full disk must not stop serving
                self.last_error = f"could not write last-known-good copy: {exc}"
        return version

    def _fallback(self, use_case: str, entry: _Entry | None, exc: Exception) -> ConfigVersion:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if entry is not None:
            entry.fetched_at = self._clock()  # retry after another TTL, not on every call
            self.last_source = "fallback-memory"
            return entry.version
        if self.cache_dir is not None:
            path = snapshot_path(self.cache_dir, use_case)
            if path.exists():
                try:
                    version = read_snapshot(path)
                except ConfigValidationError as bad:
                    self.last_error += f"; last-known-good copy unusable: {bad}"
                else:
                    self._entries[use_case] = _Entry(version, None, self._clock())
                    self.last_source = "fallback-disk"
                    return version
        raise RegistryUnavailableError(
            f"registry unavailable for {use_case!r} and no last-known-good copy: {self.last_error}"
        ) from exc
