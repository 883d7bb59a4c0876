"""No default secret, roles, four eyes, the authenticated principal in the audit, preconditions."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tasks.core.settings import REPO_ROOT, Settings
from tasks.registry.api import check_bind_host, serve_in_background, settings_env
from tasks.registry.auth import TokensFileError, add_principal, load_tokens, tokens_path
from tasks.registry.errors import FourEyesError, RegistryError
from tasks.registry.policy import ApprovalPolicy, PolicyBook
from tasks.registry.store import RegistryStore

UC = "support-summarize"
FOUR_EYES = PolicyBook(defaults=ApprovalPolicy(approval="human", four_eyes=True))


@dataclass(frozen=True)
class Served:
    """The API over a four-eyes store: the store, the API's URL and each principal's token."""

    url: str
    store: RegistryStore
    tokens: dict[str, str]
    make_api: Any

    def api(self, principal: str) -> Any:
        """A raw HTTP helper that speaks as ``principal`` unless a request names another token."""
        return self.make_api(self.url, self.tokens[principal])


@pytest.fixture
def served(
    settings: Settings, any_store: RegistryStore, principals: dict[str, str], make_api: Any
) -> Iterator[Served]:
    """The API over a four-eyes store, on SQLite and on PostgreSQL."""
    any_store.policies = FOUR_EYES
    with serve_in_background(settings, store=any_store, refresh_interval=0.0) as url:
        yield Served(url, any_store, principals, make_api)


def _publish(api: Any, make_config: Any, token: str, expected: int = 0) -> tuple[int, Any]:
    body = {"config": make_config().to_dict(), "expected_version": expected, "reason": "new"}
    status, _, raw = api.request("POST", f"/v1/configs/{UC}", body, token=token)
    return status, json.loads(raw)


def test_no_tokens_means_every_write_is_refused_in_one_line(
    settings: Settings, sqlite_store: RegistryStore, make_config: Any, make_api: Any
) -> None:
    assert settings.registry_token == ""  # no default secret in the settings either
    with serve_in_background(settings, store=sqlite_store) as url:
        api = make_api(url, "anything-at-all-anything-at-all")
        status, body = _publish(api, make_config, api.token)
    assert status == 403 and body["error"] == "writes_disabled"
    assert "llmopt registry init" in body["detail"] and "\n" not in body["detail"]
    assert sqlite_store.use_cases() == []


def test_tokens_file_readable_by_others_is_refused(settings: Settings) -> None:
    path = tokens_path(settings)
    add_principal(path, "ops", ["propose"])
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    with pytest.raises(TokensFileError, match="chmod 600"):
        load_tokens(path)


def test_binding_beyond_loopback_needs_the_explicit_flag() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_bind_host(host, allow_remote=False)
    for host in ("0.0.0.0", "::", "10.1.2.3", "example.org"):
        with pytest.raises(RegistryError, match="--allow-remote"):
            check_bind_host(host, allow_remote=False)
        check_bind_host(host, allow_remote=True)


def test_roles_and_the_audit_records_the_authenticated_principal(
    served: Served, make_config: Any
) -> None:
    store, tokens = served.store, served.tokens
    api = served.api("alice")
    status, body = _publish(api, make_config, tokens["bob"])  # bob may only approve
    assert status == 403 and "lacks the 'propose' role" in body["detail"]
    claimed = {"config": make_config().to_dict(), "expected_version": 0, "reason": "r",
               "actor": "somebody-else"}  # fmt: skip
    status, _, _ = api.request("POST", f"/v1/configs/{UC}", claimed)
    assert status == 403
    status, body = _publish(api, make_config, tokens["alice"])
    assert status == 201 and body["created_by"] == "alice"
    ok = {"comment": "ok"}
    assert api.request("POST", f"/v1/configs/{UC}/1/approve", ok, token=tokens["carol"])[0] == 403
    assert api.request("POST", f"/v1/configs/{UC}/1/approve", ok, token=tokens["bob"])[0] == 200
    ship = {"comment": "ship", "expected_production": None}
    assert api.request("POST", f"/v1/configs/{UC}/1/promote", ship, token=tokens["bob"])[0] == 403
    assert api.request("POST", f"/v1/configs/{UC}/1/promote", ship, token=tokens["carol"])[0] == 200
    assert [(e.action, e.actor) for e in store.history(UC)] == [
        ("publish", "alice"), ("approve", "bob"), ("promote", "carol"),
    ]  # fmt: skip


def test_four_eyes_refuses_the_proposer_and_automated_principals(
    served: Served, make_config: Any
) -> None:
    store = served.store
    api = served.api("ops")
    assert _publish(api, make_config, served.tokens["ops"])[0] == 201
    status, _, raw = api.request("POST", f"/v1/configs/{UC}/1/approve", {"comment": "mine"})
    assert status == 403 and json.loads(raw)["error"] == "four_eyes"
    with pytest.raises(FourEyesError, match="a person must approve"):
        store.approve(UC, 1, actor="nightly-flow", comment="auto")
    with pytest.raises(FourEyesError, match="proposed it"):
        store.approve(UC, 1, actor="ops", comment="direct store call, same person")
    assert store.get(UC, 1).state.value == "candidate"
    status, _, _ = api.request(
        "POST",
        f"/v1/configs/{UC}/1/approve",
        {"comment": "second eyes"},
        token=served.tokens["bob"],
    )
    assert status == 200
    # without four eyes (the auto policy) the nightly flow may approve
    store.policies = PolicyBook(defaults=ApprovalPolicy(approval="auto"))
    store.publish(UC, make_config(), expected_version=1, actor="nightly-flow", reason="night")
    assert store.approve(UC, 2, actor="nightly-flow", comment="auto").state.value == "approved"


def test_preconditions_on_promote_and_rollback(served: Served, make_config: Any) -> None:
    store = served.store
    store.policies = None
    for version in (1, 2, 3):
        store.publish(UC, make_config(temperature=version / 10), expected_version=version - 1,
                      actor="p", reason="r")  # fmt: skip
        store.approve(UC, version, actor="a", comment="ok")
        store.promote(UC, version, actor="a", comment="ship")
    api = served.api("carol")
    status, _, raw = api.request("POST", f"/v1/configs/{UC}/rollback", {"reason": "bad"})
    assert status == 428 and "expected_production" in json.loads(raw)["detail"]
    rollback = {"reason": "bad", "expected_production": 3}
    assert api.request("POST", f"/v1/configs/{UC}/rollback", rollback)[0] == 200
    # a second operator with the same stale view 0.5 s later: refused, production stays at 2
    time.sleep(0.5)
    status, _, raw = api.request("POST", f"/v1/configs/{UC}/rollback", rollback)
    assert status == 409 and json.loads(raw)["error"] == "precondition_failed"
    assert store.get(UC).version == 2
    # If-Match with the production ETag works the same way
    _, headers, _ = api.request("GET", f"/v1/configs/{UC}")
    etag = headers["etag"]
    status, _, raw = api.request(
        "POST", f"/v1/configs/{UC}/3/promote", {"comment": "again"},
        headers={"If-Match": '"not-the-etag"'},
    )  # fmt: skip
    assert status == 409 and store.get(UC).version == 2
    status, _, raw = api.request(
        "POST", f"/v1/configs/{UC}/rollback", {"reason": "to v1", "to_version": 1},
        headers={"If-Match": etag},
    )  # fmt: skip
    assert status == 200 and store.get(UC).version == 1
    status, _, _ = api.request(
        "POST", f"/v1/configs/{UC}/rollback", {"reason": "again", "to_version": 2},
        headers={"If-Match": etag},
    )  # fmt: skip
    assert status == 409 and store.get(UC).version == 1


def test_record_rejection_keeps_production_and_audits_who_and_why(
    any_store: RegistryStore, make_config: Any
) -> None:
    any_store.publish(UC, make_config(), expected_version=0, actor="p", reason="r")
    any_store.approve(UC, 1, actor="a", comment="ok")
    any_store.promote(UC, 1, actor="a", comment="ship")
    rejected = any_store.record_rejection(
        UC, make_config(temperature=0.9), expected_version=1, proposer="nightly-flow",
        rejected_by="dana", reason="tone too casual for customers",
    )  # fmt: skip
    assert (rejected.version, rejected.state.value) == (2, "rejected")
    assert any_store.get(UC).version == 1
    last = any_store.history(UC)[-2:]
    assert [(e.action, e.actor) for e in last] == [("publish", "nightly-flow"), ("reject", "dana")]
    assert last[-1].reason == "tone too casual for customers"


def test_a_short_body_gets_408_after_the_body_timeout(
    settings: Settings, sqlite_store: RegistryStore, principals: dict[str, str]
) -> None:
    with serve_in_background(settings, store=sqlite_store, body_timeout=0.5) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                (f"POST /v1/configs/{UC} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                 f"Authorization: Bearer {principals['ops']}\r\n\r\n{{\"a\": 1").encode()
            )  # fmt: skip
            started = time.monotonic()
            reply = sock.recv(65536).decode("latin-1")
        assert reply.startswith("HTTP/1.1 408 ") and time.monotonic() - started < 3
    assert sqlite_store.use_cases() == []


def test_serving_beyond_loopback_is_refused_in_one_line(settings: Settings) -> None:
    env = {**os.environ, **settings_env(settings)}
    done = subprocess.run(
        [sys.executable, "-m", "tasks.registry.api", "--host", "0.0.0.0", "--port", "0"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "--allow-remote" in done.stderr


def test_four_eyes_lets_automation_reweight_only_what_a_person_approved(
    sqlite_store: RegistryStore, make_config: Any
) -> None:
    store = sqlite_store
    store.policies = FOUR_EYES
    store.publish(
        UC, make_config(weights=(0.9, 0.1)), expected_version=0, actor="nightly-flow", reason="n1"
    )
    with pytest.raises(FourEyesError, match="four eyes"):
        store.approve(UC, 1, actor="nightly-flow", comment="nobody approved these yet")
    store.approve(UC, 1, actor="bob", comment="a person")
    # tomorrow's plan: the same configurations, other weights -> the flow may approve it
    store.publish(
        UC, make_config(weights=(0.7, 0.3)), expected_version=1, actor="nightly-flow", reason="n2"
    )
    assert store.approve(UC, 2, actor="nightly-flow", comment="plan").state.value == "approved"
    # a plan that adds a configuration nobody approved still needs a person
    store.publish(
        UC,
        make_config(weights=(0.7, 0.3), temperature=0.9),
        expected_version=2,
        actor="nightly-flow",
        reason="n3",
    )
    with pytest.raises(FourEyesError, match="four eyes"):
        store.approve(UC, 3, actor="nightly-flow", comment="new params")
    assert [v.state.value for v in store.versions_of(UC)] == ["approved", "approved", "candidate"]
