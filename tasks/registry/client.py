"""The serving-side client: cached, stale-while-revalidate, and still answering when the registry
is down or hung.

Standard library only (``urllib``), so a serving process imports it without Prefect, DuckDB,
MLflow, SQLAlchemy or pandas. Behaviour:

- :meth:`RegistryClient.lookup` returns a :class:`Lookup`: the production
  :class:`ConfigVersion`, where it came from (``source``) and how long ago the registry last
  confirmed it (``age_seconds``). ``get`` returns just the version; ``assign`` the arm, with the
  same ``source`` and ``age_seconds``;
- younger than ``ttl_seconds``: a dict lookup, no I/O, no lock (``source="cache"``);
- older: the cached value is returned at once (``source="stale"``) and *one* background thread
  revalidates with ``If-None-Match`` (a 304 only renews the age). A hung or slow registry never
  blocks a caller once a value is cached; only the very first lookup of a use case waits, for at
  most one ``timeout``;
- every payload is validated and its checksum verified; a good one is also written atomically to
  ``cache_dir`` as the last-known-good copy, read back when the registry is unreachable at start
  (``source="disk"``);
- a failed refresh logs one WARNING (and one INFO on recovery), counts in :attr:`counters`, and
  is retried after another ``ttl_seconds``;
- beyond ``max_staleness_seconds`` the lookup raises :class:`StaleConfigError`
  (``on_max_staleness="raise"``) or reports it (``Lookup.over_max_staleness``, one WARNING).

Example (needs a running registry)::

    client = RegistryClient("http://127.0.0.1:8765", cache_dir=Path("/var/cache/llmopt"))
    chosen = client.assign("support-summarize", unit_id="user-42")
    call_llm(**chosen.arm.params.to_dict()); log(config_id=chosen.config_id)

Size: one class whose methods share one small state machine per use case (entry, in-flight
refresh, failing flag); split, the locking rules would live in two places.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tasks.core.errors import LlmoptError
from tasks.core.settings import Settings
from tasks.registry.assignment import assign_arm
from tasks.registry.model import Arm, ConfigValidationError, ConfigVersion, validate_use_case
from tasks.registry.routing import routing_of
from tasks.registry.snapshot import atomic_write_bytes, read_snapshot, snapshot_path

__all__ = [
    "Assignment",
    "Lookup",
    "RegistryClient",
    "RegistryUnavailableError",
    "StaleConfigError",
]

MAX_RESPONSE_BYTES = 4 << 20
Source = Literal["network", "not-modified", "cache", "stale", "disk"]
log = logging.getLogger(__name__)


class RegistryUnavailableError(LlmoptError, RuntimeError):
    """No configuration can be served: the registry failed and no last-known-good copy exists."""


class StaleConfigError(RegistryUnavailableError):
    """The only configuration at hand is older than ``max_staleness_seconds``."""


@dataclass(frozen=True, kw_only=True)
class Lookup:
    """One lookup: the version, where it came from and how old the registry's word on it is."""

    version: ConfigVersion
    source: Source
    age_seconds: float
    over_max_staleness: bool = False
    last_error: str | None = None


@dataclass(frozen=True)
class Assignment:
    """What to call for one unit, and what to log beside the call."""

    use_case: str
    version: int
    arm: Arm
    config_id: str
    source: str = "cache"
    age_seconds: float = 0.0
    routed_weight: float | None = None  # the arm's weight in the routing row that applied
    context_row: str | None = None  # that row's context value ("*": the default row)

    @property
    def propensity(self) -> float:
        """The probability this unit's arm had (its weight): log it for off-policy estimates."""
        return self.arm.weight if self.routed_weight is None else self.routed_weight


@dataclass
class _Entry:
    version: ConfigVersion
    etag: str | None
    confirmed_at: float  # clock time the registry last vouched for this value
    attempted_at: float  # clock time of the last refresh attempt (success or not)
    from_disk: bool = False
    failing: bool = False
    warned_stale: bool = False


class RegistryClient:
    """Read production configurations from the registry HTTP API (see module docstring).

    Args:
        base_url: the API, e.g. ``http://127.0.0.1:8765``.
        ttl_seconds: how long a value is served without asking the registry.
        timeout: socket timeout of one request, in seconds.
        cache_dir: where last-known-good copies are kept (None: memory only).
        max_staleness_seconds: beyond this age a lookup raises or reports (None: never).
        on_max_staleness: ``"raise"`` (:class:`StaleConfigError`) or ``"report"``.
        background: revalidate in a background thread (False: in the caller, bounded by timeout).
        clock: monotonic clock (tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        ttl_seconds: float = 5.0,
        timeout: float = 2.0,
        cache_dir: Path | None = None,
        max_staleness_seconds: float | None = None,
        on_max_staleness: Literal["raise", "report"] = "report",
        background: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if on_max_staleness not in {"raise", "report"}:
            raise ValueError("on_max_staleness must be 'raise' or 'report'")
        self.base_url = base_url.rstrip("/")
        self.ttl_seconds, self.timeout = ttl_seconds, timeout
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_staleness_seconds, self.on_max_staleness = max_staleness_seconds, on_max_staleness
        self.background = background
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._first_fetch = threading.Lock()
        self._inflight: set[str] = set()
        self._idle = threading.Condition(self._lock)
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        if background:  # one refresher for the client's life: a caller only enqueues
            threading.Thread(
                target=self._refresh_loop, daemon=True, name="registry-refresh"
            ).start()
        self.counters: Counter[str] = Counter()
        self.last_source: str = "none"
        self.last_error: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> RegistryClient:
        """A client for ``settings.registry_api_url``; last-known-good copies under the home.

        Args:
            settings: resolved settings.
            **kwargs: constructor options.

        Returns:
            The client.
        """
        kwargs.setdefault("cache_dir", settings.home / "data" / "registry-client-cache")
        return cls(settings.registry_api_url, **kwargs)

    # -- public ---------------------------------------------------------------------------------

    def lookup(self, use_case: str) -> Lookup:
        """The production configuration of ``use_case`` with its source and age.

        Args:
            use_case: the use case.

        Returns:
            The lookup result.

        Raises:
            RegistryUnavailableError: never seen a good value and the registry failed.
            StaleConfigError: older than ``max_staleness_seconds`` (``on_max_staleness="raise"``).
        """
        entry = self._entries.get(use_case)
        source: Source | None = None
        if entry is None:
            entry = self._first(validate_use_case(use_case))
            source = "disk" if entry.from_disk else "network"
        now = self._clock()
        if (
            source is None
            and now - entry.confirmed_at >= self.ttl_seconds
            and now - entry.attempted_at >= self.ttl_seconds
        ):
            if self.background:
                self._spawn_refresh(use_case)
            else:  # revalidate in the caller, bounded by one timeout
                previous, confirmed = entry, entry.confirmed_at
                entry = self._refresh(use_case)
                if entry is not previous:
                    source = "network"
                elif entry.confirmed_at != confirmed:
                    source = "not-modified"
        age = max(0.0, self._clock() - entry.confirmed_at)
        if source is None:
            fresh = age < self.ttl_seconds
            source = ("disk" if entry.from_disk else "cache") if fresh else "stale"
        over = self._check_staleness(use_case, entry, age)
        self.last_source = source
        return Lookup(
            version=entry.version, source=source, age_seconds=age, over_max_staleness=over,
            last_error=self.last_error if entry.failing else None,
        )  # fmt: skip

    def get(self, use_case: str) -> ConfigVersion:
        """The production configuration of ``use_case`` (see :meth:`lookup`).

        Args:
            use_case: the use case.

        Returns:
            The version.
        """
        return self.lookup(use_case).version

    def assign(
        self, use_case: str, unit_id: str, *, context: Mapping[str, object] | None = None
    ) -> Assignment:
        """The arm serving ``unit_id``: the same answer in every process (see assignment.py).

        Args:
            use_case: the use case.
            unit_id: the randomisation unit (user, session, conversation).
            context: the request's context fields; used when the configuration carries a
                routing table (``tasks.registry.routing``), unseen values take its default row.

        Returns:
            The assignment with the lookup's ``source`` and ``age_seconds``.
        """
        found = self.lookup(use_case)
        version = found.version
        table = routing_of(version.config)
        if table is not None:
            row, weights = table.row_for(context)
            chosen = table.assign(unit_id, context=context)
            arm = next(a for a in version.config.arms if (a.config_id or a.arm_id) == chosen)
            return Assignment(
                use_case, version.version, arm, chosen, found.source, found.age_seconds,
                routed_weight=weights[chosen], context_row=row,
            )  # fmt: skip
        arm = assign_arm(version.config, unit_id)
        config_id = arm.config_id or f"{use_case}/v{version.version}/{arm.arm_id}"
        return Assignment(
            use_case, version.version, arm, config_id, found.source, found.age_seconds
        )

    def wait_for_refreshes(self, timeout: float | None = None) -> bool:
        """Wait until no background refresh is queued or running (tests, orderly shutdown).

        Args:
            timeout: seconds to wait at most (None: as long as it takes).

        Returns:
            True when idle, False on timeout.
        """
        with self._idle:
            return self._idle.wait_for(lambda: not self._inflight, timeout)

    # -- internals ------------------------------------------------------------------------------

    def _check_staleness(self, use_case: str, entry: _Entry, age: float) -> bool:
        limit = self.max_staleness_seconds
        if limit is None or age <= limit:
            entry.warned_stale = False
            return False
        self.counters["over_max_staleness"] += 1
        if self.on_max_staleness == "raise":
            raise StaleConfigError(
                f"{use_case}: configuration is {age:.1f}s old (max {limit}s): {self.last_error}"
            )
        if not entry.warned_stale:
            entry.warned_stale = True
            log.warning(
                "registry %s: serving a %.1fs old configuration (max %ss)", use_case, age, limit
            )
        return True

    def _first(self, use_case: str) -> _Entry:
        """No value yet: fetch in the caller (one request at most, others wait for it)."""
        with self._first_fetch:
            entry = self._entries.get(use_case)
            return entry if entry is not None else self._refresh(use_case)

    def _spawn_refresh(self, use_case: str) -> None:
        with self._lock:
            if use_case in self._inflight:
                return
            self._inflight.add(use_case)
        self._queue.put(use_case)  # never blocks: the refresher thread does the I/O

    def _refresh_loop(self) -> None:
        while True:
            use_case = self._queue.get()
            try:
                self._refresh(use_case)
            except RegistryUnavailableError:
                pass  # counted and logged by _refresh; the cached value keeps serving
            except Exception:  # the refresher must survive anything and keep serving
                log.exception("registry %s: background refresh failed", use_case)
            finally:
                with self._idle:
                    self._inflight.discard(use_case)
                    self._idle.notify_all()

    def _fetch(
        self, use_case: str, entry: _Entry | None
    ) -> tuple[ConfigVersion, str | None, bytes] | None:
        """One conditional GET; None means 304 (the cached value is still current)."""
        request = urllib.request.Request(
            f"{self.base_url}/v1/configs/{use_case}", headers={"Accept": "application/json"}
        )
        if entry is not None and entry.etag:
            request.add_header("If-None-Match", entry.etag)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
                etag = response.headers.get("ETag")
        except urllib.error.HTTPError as exc:
            if exc.code == 304 and entry is not None:
                return None
            raise
        if len(raw) > MAX_RESPONSE_BYTES:
            raise ConfigValidationError("response too large")
        version = ConfigVersion.from_document(json.loads(raw))
        if version.use_case != use_case:
            raise ConfigValidationError(f"asked for {use_case!r}, got {version.use_case!r}")
        return version, etag, raw

    def _refresh(self, use_case: str) -> _Entry:
        entry = self._entries.get(use_case)
        started = self._clock()
        self.counters["refreshes"] += 1
        try:
            fetched = self._fetch(use_case, entry)
        except (OSError, ValueError) as exc:  # URLError, timeouts, HTTP errors, bad JSON/payload
            return self._failed(use_case, entry, exc, started)
        now = self._clock()
        if fetched is None:
            assert entry is not None
            entry.confirmed_at, entry.attempted_at, entry.from_disk = now, now, False
            self.counters["not_modified"] += 1
        else:
            version, etag, raw = fetched
            entry = _Entry(version, etag, now, now)
            self._entries[use_case] = entry
            self._keep_copy(use_case, raw)
        if self._recovered(use_case):
            log.info("registry %s: reachable again; serving v%s", use_case, entry.version.version)
        return entry

    def _recovered(self, use_case: str) -> bool:
        entry = self._entries[use_case]
        was_failing, entry.failing = entry.failing, False
        if was_failing:
            self.counters["recoveries"] += 1
            self.last_error = None
        return was_failing

    def _keep_copy(self, use_case: str, raw: bytes) -> None:
        if self.cache_dir is None:
            return
        try:
            atomic_write_bytes(snapshot_path(self.cache_dir, use_case), raw)
        except OSError as exc:  # a full disk must not stop serving
            self.counters["copy_write_errors"] += 1
            log.warning("registry %s: could not write last-known-good copy: %s", use_case, exc)

    def _failed(
        self, use_case: str, entry: _Entry | None, exc: Exception, started: float
    ) -> _Entry:
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.counters["refresh_failures"] += 1
        if entry is None:
            entry = self._from_disk(use_case, exc)
        entry.attempted_at = self._clock()
        if not entry.failing:
            entry.failing = True
            self.counters["fallbacks"] += 1
            log.warning(
                "registry %s unreachable (%s); serving v%s from %s",
                use_case, self.last_error, entry.version.version,
                "the last-known-good file" if entry.from_disk else "memory",
            )  # fmt: skip
        return entry

    def _from_disk(self, use_case: str, exc: Exception) -> _Entry:
        path = None if self.cache_dir is None else snapshot_path(self.cache_dir, use_case)
        if path is not None and path.exists():
            try:
                version = read_snapshot(path)
            except ConfigValidationError as bad:
                self.last_error = f"{self.last_error}; last-known-good copy unusable: {bad}"
            else:
                age = max(0.0, time.time() - path.stat().st_mtime)
                entry = _Entry(version, None, self._clock() - age, self._clock(), from_disk=True)
                self._entries[use_case] = entry
                self.counters["fallback_disk"] += 1
                return entry
        raise RegistryUnavailableError(
            f"registry unavailable for {use_case!r} and no last-known-good copy: {self.last_error}"
        ) from exc
