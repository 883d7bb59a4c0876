"""No 5xx for any request: Hypothesis over methods, paths, headers and bodies, on both backends.

Every request goes over a fresh TCP connection to the real HTTP server. Every answer must be
below 500, carry a one-line JSON error when it is a refusal, and a refused write must leave the
registry exactly as it was.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tasks.core.settings import Settings
from tasks.registry.api import serve_in_background
from tasks.registry.store import RegistryStore

UC = "support-summarize"
EXAMPLES = 1500  # per backend

_segment_text = st.text(
    st.characters(blacklist_categories=("Cc",), blacklist_characters=" \t\r\n"), max_size=12
)
_segment = st.one_of(
    st.sampled_from(["v1", "configs", UC, "1", "2", "production", "candidate", "latest",
                     "history", "approve", "reject", "promote", "rollback", "health", "metrics",
                     "use-cases", "..", ".", "%ff", "%c0%ae", "%2e%2e", "%00", "9" * 20,
                     str(2**63), "%F0%9F%98%80", "%ed%a0%80"]),
    _segment_text.map(lambda t: quote(t, safe="", errors="surrogatepass")),
    _segment_text.map(lambda t: t.encode("utf-8", "surrogatepass").decode("latin-1")),
)  # fmt: skip
_ENDPOINTS = ["", "/1", "/2", "/production", "/history", "/1/approve", "/2/approve", "/1/reject",
              "/2/reject", "/1/promote", "/2/promote", "/rollback", "/%32/promote"]  # fmt: skip
_path = st.one_of(
    st.sampled_from(_ENDPOINTS).map(lambda tail: f"/v1/configs/{UC}{tail}"),
    st.sampled_from(_ENDPOINTS).map(lambda tail: f"/v1/configs/{UC}{tail}"),
    st.tuples(st.sampled_from(_ENDPOINTS), _segment).map(
        lambda t: f"/v1/configs/{UC}{t[0]}/{t[1]}"
    ),
    st.lists(_segment, min_size=1, max_size=6).map(lambda parts: "/" + "/".join(parts)),
    st.lists(_segment, max_size=3).map(lambda parts: "/v1/configs/" + "/".join(parts)),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40).map(lambda t: "/" + t),
)
_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["\ud800", "a\x00b", "\udfff"]),
)  # fmt: skip
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def _body(draw: Any, goods: list[dict[str, Any]]) -> bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "json", "bytes", "deep", "empty"]))
    if kind == "mutated":  # a valid write body of some endpoint, with up to two fields replaced
        good = draw(st.sampled_from(goods))
        body = dict(good)
        for key in draw(st.lists(st.sampled_from(sorted({*good, "to_version", "comment",
                                                          "expected_production", "actor"})),
                                 min_size=0, max_size=2)):  # fmt: skip
            body[key] = draw(_json)
        return json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if kind == "json":
        return json.dumps(draw(_json)).encode("utf-8", "surrogatepass")
    if kind == "deep":
        depth = draw(st.integers(min_value=500, max_value=200_000))
        return b"[" * depth + b"]" * draw(st.sampled_from([0, depth]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    return b""


_header_name = st.sampled_from(
    ["If-None-Match", "If-Match", "Content-Type", "Accept", "X-Forwarded-For", "Expect",
     "Transfer-Encoding", "Connection", "Range", "Cookie"]
)  # fmt: skip
_header_value = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)


def _exchange(host: str, port: int, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
             if line.lower().startswith(b"content-length:")), 0,
        )  # fmt: skip
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    assert data.startswith(b"HTTP/1."), data[:120]
    return int(data.split(b" ", 2)[1]), rest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(
    request: pytest.FixtureRequest, settings: Settings, principals: dict[str, str], make_config: Any
) -> Iterator[tuple[str, int, RegistryStore, dict[str, str], list[dict[str, Any]]]]:
    store: RegistryStore = request.getfixturevalue(
        "sqlite_store" if request.param == "sqlite" else "pg_store"
    )
    store.publish(UC, make_config(), expected_version=0, actor="p", reason="seed")
    store.approve(UC, 1, actor="a", comment="ok")
    store.promote(UC, 1, actor="a", comment="ship")
    goods = [
        {"config": make_config(temperature=0.5).to_dict(), "expected_version": 1, "reason": "f"},
        {"comment": "fuzz"},
        {"comment": "fuzz", "expected_production": 1},
        {"reason": "fuzz", "expected_production": 1},
        {"reason": "fuzz", "expected_production": 1, "to_version": 1},
    ]
    with serve_in_background(settings, store=store, body_timeout=0.1) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port), store, principals, goods


@pytest.mark.slow  # about 40 s per backend on the 2-core machines
def test_no_request_gets_a_5xx_and_refusals_change_nothing(
    target: tuple[str, int, RegistryStore, dict[str, str], list[dict[str, Any]]],
) -> None:
    host, port, store, principals, goods = target
    tokens = [principals["ops"], principals["bob"], "wrong-token-wrong-token-wrong", ""]
    seen: dict[int, int] = {}

    @hsettings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(
        method=st.sampled_from(
            ["GET", "GET", "POST", "POST", "POST", "POST", "HEAD", "PUT", "BREW"]
        ),
        path=_path,
        headers=st.dictionaries(_header_name, _header_value, max_size=3),
        token=st.sampled_from(tokens),
        body=_body(goods),
        length=st.sampled_from(["exact", "exact", "exact", "missing", "short", "junk"]),
    )
    def check(
        *, method: str, path: str, headers: dict[str, str], token: str, body: bytes, length: str
    ) -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: registry", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k != "Transfer-Encoding" or
                  method != "POST"]  # fmt: skip
        if token:
            lines.append(f"Authorization: Bearer {token}")
        if length == "exact":
            lines.append(f"Content-Length: {len(body)}")
        elif length == "short":  # announce more than is sent: must time out as a 408
            lines.append(f"Content-Length: {len(body) + 10}")
        elif length == "junk":
            lines.append("Content-Length: 1_0")
        request = "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body
        before = store.revisions()
        status, payload = _exchange(host, port, request)
        seen[status] = seen.get(status, 0) + 1
        assert status < 500, (request[:300], payload[:300])
        if status >= 400 and method != "HEAD":
            error = json.loads(payload)
            assert set(error) == {"error", "detail"} and "\n" not in error["detail"]
        if status >= 300 or method != "POST":
            assert store.revisions() == before, request[:300]

    check()
    assert sum(seen.values()) >= EXAMPLES
    assert {200, 400, 401, 403, 404, 405, 409, 422} <= set(seen), seen  # every layer was reached
    assert store.get(UC).version >= 1  # still serving
