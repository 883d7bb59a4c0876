"""Fixtures for the registry tests: config factories and stores on SQLite and PostgreSQL."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tasks.core.settings import Settings
from tasks.registry.auth import add_principal, load_tokens, tokens_path
from tasks.registry.model import Arm, ModelParams, RegistryConfig
from tasks.registry.store import RegistryStore

ConfigFactory = Callable[..., RegistryConfig]


def _config(
    use_case: str = "support-summarize",
    *,
    model: str = "gpt-4o-mini",
    temperature: float = 0.3,
    weights: tuple[float, ...] = (),
    **extra: Any,
) -> RegistryConfig:
    params = ModelParams(
        model=model,
        provider="openai",
        prompt_id="summarize-v1",
        temperature=temperature,
        top_p=0.9,
        max_tokens=512,
    )
    traffic = tuple(
        Arm(
            arm_id=f"arm-{i}",
            params=ModelParams(model=model, prompt_id=f"summarize-v{i + 1}", temperature=0.2),
            weight=w,
            role="production" if i == 0 else "experiment",
            experiment_id=None if i == 0 else "exp-1",
        )
        for i, w in enumerate(weights)
    )
    return RegistryConfig(use_case=use_case, params=params, traffic=traffic, **extra)


@pytest.fixture
def make_config() -> ConfigFactory:
    """``make_config(use_case, model=..., temperature=..., weights=(...))`` -> RegistryConfig."""
    return _config


@pytest.fixture
def sqlite_store(settings: Settings) -> Iterator[RegistryStore]:
    store = RegistryStore.from_settings(settings)
    yield store
    store.dispose()


@pytest.fixture
def pg_store(pg_url: str, settings: Settings) -> Iterator[RegistryStore]:
    """A registry on the PostgreSQL service under a unique table prefix, dropped afterwards."""
    prefix = f"reg_{uuid.uuid4().hex[:12]}_"
    store = RegistryStore(pg_url, table_prefix=prefix, snapshot_dir=settings.registry_snapshot_dir)
    yield store
    store.drop_all()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest) -> RegistryStore:
    """The same test on the embedded default and on the shared-deployment database."""
    fixture = "sqlite_store" if request.param == "sqlite" else "pg_store"
    store: RegistryStore = request.getfixturevalue(fixture)
    return store


PRINCIPALS = {
    "ops": ("propose", "approve", "promote"),
    "alice": ("propose",),
    "bob": ("approve",),
    "carol": ("promote",),
}


@pytest.fixture
def principals(settings: Settings) -> dict[str, str]:
    """A tokens file under the test home with four principals; returns name -> token."""
    path = tokens_path(settings)
    for name, roles in PRINCIPALS.items():
        add_principal(path, name, roles)
    book = load_tokens(path)
    return {name: str(book.token_of(name)) for name in PRINCIPALS}


class Api:
    """A tiny keep-alive HTTP helper that sends paths exactly as given (no normalisation)."""

    def __init__(self, base_url: str, token: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port, self.token = parts.hostname or "", parts.port or 80, token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = "default",
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        all_headers = dict(headers or {})
        if token == "default":
            token = self.token
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data


@pytest.fixture
def make_api() -> type[Api]:
    """``make_api(base_url, token)``: a raw keep-alive HTTP helper (paths sent as given)."""
    return Api
