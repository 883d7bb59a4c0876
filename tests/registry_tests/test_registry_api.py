"""The HTTP API: reads, ETag/304, health, metrics, and bad input that must change nothing."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tasks.core.settings import Settings
from tasks.registry.api import serve_in_background
from tasks.registry.model import ConfigVersion
from tasks.registry.store import RegistryStore

UC = "support-summarize"


@pytest.fixture
def api(
    settings: Settings,
    sqlite_store: RegistryStore,
    make_config: Any,
    principals: dict[str, str],
    make_api: Any,
) -> Iterator[Any]:
    sqlite_store.publish(UC, make_config(), expected_version=0, actor="a", reason="v1")
    sqlite_store.approve(UC, 1, actor="a", comment="ok")
    sqlite_store.promote(UC, 1, actor="a", comment="ship")
    with serve_in_background(settings, store=sqlite_store, refresh_interval=0.0) as url:
        yield make_api(url, principals["ops"])


def _publish_body(make_config: Any, expected: int = 1, **overrides: Any) -> dict[str, Any]:
    return {
        "config": make_config(temperature=0.7).to_dict(),
        "expected_version": expected,
        "reason": "better",
        "run_id": "run-9",
        "evidence": {"lift": 0.02},
        **overrides,
    }


def test_read_production_with_etag_and_304(api: Any, sqlite_store: RegistryStore) -> None:
    status, headers, body = api.request("GET", f"/v1/configs/{UC}", token=None)
    assert status == 200
    doc = ConfigVersion.from_document(json.loads(body))
    assert (doc.version, doc.checksum) == (1, sqlite_store.get(UC).checksum)
    etag = headers["etag"]
    status, headers2, body2 = api.request(
        "GET", f"/v1/configs/{UC}", token=None, headers={"If-None-Match": etag}
    )
    assert (status, body2, headers2["etag"]) == (304, b"", etag)
    status, _, _ = api.request("GET", f"/v1/configs/{UC}", headers={"If-None-Match": '"other"'})
    assert status == 200
    # a change through another writer (the store directly) gives a new ETag
    sqlite_store.publish(UC, sqlite_store.get(UC).config, expected_version=1, actor="a", reason="2")
    sqlite_store.approve(UC, 2, actor="a", comment="ok")
    sqlite_store.promote(UC, 2, actor="a", comment="ship")
    status, headers3, body3 = api.request(
        "GET", f"/v1/configs/{UC}", headers={"If-None-Match": etag}
    )
    assert status == 200 and headers3["etag"] != etag
    assert json.loads(body3)["version"] == 2
    status, _, body = api.request("GET", f"/v1/configs/{UC}/1")
    assert status == 200 and json.loads(body)["state"] == "retired"
    status, _, body = api.request("GET", f"/v1/configs/{UC}/history")
    assert [e["action"] for e in json.loads(body)["history"]][-1] == "promote"


def test_health_use_cases_and_metrics(api: Any) -> None:
    status, _, body = api.request("GET", "/health")
    assert status == 200 and json.loads(body) == {"status": "ok", "use_cases": 1}
    api.request("GET", f"/v1/configs/{UC}")
    api.request("GET", "/v1/configs/unknown-uc")
    status, _, body = api.request("GET", "/v1/use-cases")
    assert json.loads(body)["use_cases"] == [{"use_case": UC, "production_version": 1}]
    status, headers, body = api.request("GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'llmopt_registry_requests_total{endpoint="config",method="GET",status="200"} 1.0' in text
    assert 'llmopt_registry_requests_total{endpoint="error",method="GET",status="404"} 1.0' in text
    assert f'llmopt_registry_served_version{{use_case="{UC}"}} 1.0' in text
    assert 'llmopt_registry_request_seconds_count{endpoint="config"} 1.0' in text


def test_authorised_writes_walk_the_lifecycle(api: Any, make_config: Any) -> None:
    status, _, body = api.request("POST", f"/v1/configs/{UC}", _publish_body(make_config))
    assert status == 201 and json.loads(body)["version"] == 2
    status, _, body = api.request("POST", f"/v1/configs/{UC}", _publish_body(make_config))
    assert status == 409 and json.loads(body)["error"] == "stale_version"
    status, _, _ = api.request(
        "POST", f"/v1/configs/{UC}/2/promote", {"comment": "y", "expected_production": 1}
    )
    assert status == 409
    status, _, body = api.request("POST", f"/v1/configs/{UC}/2/approve", {"comment": "ok"})
    assert status == 200
    status, _, body = api.request(
        "POST", f"/v1/configs/{UC}/2/promote", {"comment": "ship", "expected_production": 1}
    )
    assert status == 200
    assert json.loads(api.request("GET", f"/v1/configs/{UC}")[2])["version"] == 2
    status, _, body = api.request(
        "POST", f"/v1/configs/{UC}/rollback", {"reason": "bad", "expected_production": 2}
    )
    assert status == 200 and json.loads(body)["version"] == 1
    assert json.loads(api.request("GET", f"/v1/configs/{UC}")[2])["version"] == 1


def _state(store: RegistryStore) -> tuple[Any, ...]:
    return (store.revisions(), store.use_cases(), len(store.history(UC)))


BAD_PATHS = [
    "/v1/configs/../etc/passwd",
    "/v1/configs/%2e%2e/etc",
    "/v1/configs/%2e%2e",
    "/v1/configs/..%2fetc",
    "/v1/configs/%2fetc%2fpasswd",
    "/v1/configs/Support",
    "/v1/configs/a%00b",
    "/v1/configs/" + "a" * 80,
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_path_tricks_are_refused_on_read_and_write(
    api: Any, sqlite_store: RegistryStore, make_config: Any, path: str
) -> None:
    before = _state(sqlite_store)
    status, _, body = api.request("GET", path)
    assert status == 400, body
    status, _, body = api.request("POST", path, _publish_body(make_config))
    assert status == 400, body
    assert _state(sqlite_store) == before


@pytest.mark.parametrize(
    ("token", "detail"), [(None, "missing"), ("wrong-token", "wrong"), ("", "missing")]
)
def test_missing_or_wrong_token(
    api: Any, sqlite_store: RegistryStore, make_config: Any, token: str | None, detail: str
) -> None:
    before = _state(sqlite_store)
    status, headers, body = api.request(
        "POST", f"/v1/configs/{UC}", _publish_body(make_config), token=token
    )
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert detail in json.loads(body)["detail"]
    assert _state(sqlite_store) == before


def _bad_bodies(make_config: Any) -> list[tuple[bytes, int]]:
    good = _publish_body(make_config)
    config = good["config"]
    return [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"config": NaN}', 400),
        (b"\xff\xfe", 400),
        (json.dumps({**good, "expected_version": "1"}).encode(), 422),
        (json.dumps({**good, "extra": 1}).encode(), 422),
        (json.dumps({k: v for k, v in good.items() if k != "reason"}).encode(), 422),
        (json.dumps({**good, "config": {**config, "params": {"model": 5}}}).encode(), 422),
        (
            json.dumps(
                {**good, "config": {**config, "params": {**config["params"], "temperature": 3}}}
            ).encode(),
            422,
        ),
        (json.dumps({**good, "config": {**config, "use_case": "other"}}).encode(), 422),
        (json.dumps({**good, "evidence": [1]}).encode(), 422),
    ]


def test_malformed_and_wrongly_typed_bodies(
    api: Any, sqlite_store: RegistryStore, make_config: Any
) -> None:
    before = _state(sqlite_store)
    for raw, expected in _bad_bodies(make_config):
        status, _, body = api.request("POST", f"/v1/configs/{UC}", raw=raw)
        assert status == expected, (raw[:80], body)
        assert json.loads(body)["error"] in {"bad_json", "invalid"}
    status, _, _ = api.request("POST", f"/v1/configs/{UC}/1/approve", {"comment": 5})
    assert status == 422
    status, _, _ = api.request(
        "POST",
        f"/v1/configs/{UC}/rollback",
        {"reason": "r", "to_version": "1", "expected_production": 1},
    )
    assert status == 422
    assert api.request("PUT", f"/v1/configs/{UC}", {})[0] == 405
    assert _state(sqlite_store) == before


def test_huge_and_unsized_bodies(api: Any, sqlite_store: RegistryStore) -> None:
    before = _state(sqlite_store)
    headers = (
        f"POST /v1/configs/{UC} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.token}\r\n"
        "Content-Type: application/json\r\n"
    )
    cases = [
        ("Content-Length: 2097152\r\n\r\n" + "{" * 1000, 413),  # 2 MiB announced, not read
        ("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
        ("\r\n", 411),
        ("Content-Length: abc\r\n\r\n", 400),
    ]
    for tail, expected in cases:
        with socket.create_connection((api.host, api.port), timeout=10) as sock:
            sock.sendall((headers + tail).encode())
            reply = sock.recv(65536).decode("latin-1")
        assert reply.startswith(f"HTTP/1.1 {expected} "), reply[:200]
    # a 1 MiB + 1 body sent in full is refused too
    status, _, _ = api.request("POST", f"/v1/configs/{UC}", raw=b" " * ((1 << 20) + 1))
    assert status == 413
    assert _state(sqlite_store) == before


def test_unknown_things_are_404(api: Any) -> None:
    assert api.request("GET", "/v1/configs/nobody-here")[0] == 404
    assert api.request("GET", f"/v1/configs/{UC}/99")[0] == 404
    assert api.request("GET", f"/v1/configs/{UC}/candidate")[0] == 404
    assert api.request("GET", f"/v1/configs/{UC}/whatever")[0] == 400
    assert api.request("GET", f"/v1/configs/{UC}/%C2%B2")[0] == 400  # a unicode digit
    assert api.request("GET", f"/v1/configs/{UC}/" + "9" * 30)[0] == 400
    body = {"comment": "c"}
    assert api.request("POST", f"/v1/configs/{UC}/{'9' * 30}/approve", body)[0] == 404
    assert api.request("GET", "/v2/anything")[0] == 404
    assert api.request("POST", f"/v1/configs/{UC}/1/explode", {"comment": "c"})[0] == 404


def test_api_on_postgresql_store(
    settings: Settings,
    pg_store: RegistryStore,
    make_config: Any,
    principals: dict[str, str],
    make_api: Any,
) -> None:
    with serve_in_background(settings, store=pg_store, refresh_interval=0.0) as url:
        api = make_api(url, principals["ops"])
        assert api.request("POST", f"/v1/configs/{UC}", _publish_body(make_config, 0))[0] == 201
        approve = {"comment": "ok"}
        assert api.request("POST", f"/v1/configs/{UC}/1/approve", approve)[0] == 200
        promote = {"comment": "ship", "expected_production": None}
        assert api.request("POST", f"/v1/configs/{UC}/1/promote", promote)[0] == 200
        status, headers, body = api.request("GET", f"/v1/configs/{UC}")
        assert status == 200 and ConfigVersion.from_document(json.loads(body)).version == 1
        etag = headers["etag"]
        assert api.request("GET", f"/v1/configs/{UC}", headers={"If-None-Match": etag})[0] == 304
    assert pg_store.get(UC).run_id == "run-9"


def test_the_inputs_that_used_to_give_500s_are_4xx_on_both_backends(
    settings: Settings,
    any_store: RegistryStore,
    make_config: Any,
    principals: dict[str, str],
    make_api: Any,
) -> None:
    any_store.publish(UC, make_config(), expected_version=0, actor="p", reason="v1")
    any_store.approve(UC, 1, actor="a", comment="ok")
    any_store.promote(UC, 1, actor="a", comment="ship")
    before = _state(any_store)
    with serve_in_background(settings, store=any_store, body_timeout=0.5) as url:
        api = make_api(url, principals["ops"])
        assert api.request("GET", "/v1/configs/%ff", token=None)[0] == 400
        assert api.request("POST", f"/v1/configs/{UC}", raw=b"[" * 100_000)[0] == 400
        deep = b'{"a":' * 5000 + b"{}" + b"}" * 5000  # parses, but too deep to re-encode
        nested = json.dumps(_publish_body(make_config, evidence={"x": 1})).encode()
        nested = nested.replace(b'{"x": 1}', deep)
        assert api.request("POST", f"/v1/configs/{UC}", raw=nested)[0] in {400, 422}
        for huge in (2**63, 2**31, -1, 0):
            body = {"reason": "r", "to_version": huge, "expected_production": 1}
            status, _, raw = api.request("POST", f"/v1/configs/{UC}/rollback", body)
            assert status == 422 and "to_version" in json.loads(raw)["detail"], huge
        for reason in ("\ud800 lone surrogate", "nul \x00 inside"):
            raw_body = json.dumps(_publish_body(make_config, reason=reason)).encode()
            status, _, raw = api.request("POST", f"/v1/configs/{UC}", raw=raw_body)
            assert status == 422, raw
            status, _, raw = api.request(
                "POST", f"/v1/configs/{UC}/1/reject", raw=json.dumps({"comment": reason}).encode()
            )
            assert status == 422, raw
    assert _state(any_store) == before
