"""``llmopt registry ...``: human approval, rollback, inspection, publishing and the read API.

Writes act as a principal from the tokens file (``llmopt registry init`` creates it): the one
``LLMOPT_REGISTRY_TOKEN`` names, else ``--as NAME``, else the file's only principal. The action's
role is checked here, four eyes by the store, and the audit records that principal.

Size: one small handler per registry operation (init, publish, approve, reject, promote,
rollback, history, show, list, snapshot, serve) and the parser that lists them; splitting it
would scatter one command's options from its handler.
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.cli_support import CommandError, add_json_flag, emit, guarded, to_jsonable

if TYPE_CHECKING:
    from tasks.registry.store import RegistryStore

__all__ = ["register"]


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database in some containers
        return "operator"


@contextmanager
def _store() -> Iterator[RegistryStore]:
    """The store from settings; registry/config errors become one-line CLI errors."""
    from tasks.core.config import ConfigError
    from tasks.core.settings import load_settings
    from tasks.registry.model import ConfigValidationError
    from tasks.registry.store import RegistryError, RegistryStore

    try:
        store = RegistryStore.from_settings(load_settings())
    except (RegistryError, ConfigValidationError, ConfigError) as exc:
        raise CommandError(f"{type(exc).__name__}: {exc}") from exc
    try:
        yield store
    except (RegistryError, ConfigValidationError, ConfigError) as exc:
        raise CommandError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        store.dispose()


def _actor(args: argparse.Namespace, *roles: str) -> str:
    """The authenticated principal acting for this command, holding every role in ``roles``."""
    from tasks.core.settings import load_settings
    from tasks.registry.auth import load_tokens, resolve_principal, tokens_path
    from tasks.registry.errors import RegistryError

    settings = load_settings()
    try:
        principal = resolve_principal(
            load_tokens(tokens_path(settings)), token=settings.registry_token, name=args.as_name
        )
        for role in roles:
            principal.require(role)
    except RegistryError as exc:
        raise CommandError(f"{type(exc).__name__}: {exc}") from exc
    return principal.name


def _expected(args: argparse.Namespace) -> dict[str, Any]:
    """``--expected-production N|none`` as store keyword arguments (absent: no precondition)."""
    raw = args.expected_production
    if raw is None:
        return {}
    if raw != "none" and not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise CommandError("--expected-production takes a version number or 'none'")
    return {"expected_production": None if raw == "none" else int(raw), "check_expected": True}


def _human_version(doc: dict[str, Any]) -> str:
    params = doc["config"]["params"]
    lines = [
        f"{doc['use_case']} v{doc['version']} [{doc['state']}] aliases={doc.get('aliases', [])}",
        f"  model={params['model']} provider={params['provider']} prompt={params['prompt_id']} "
        f"temperature={params['temperature']} top_p={params['top_p']} "
        f"max_tokens={params['max_tokens']}",
    ]
    for arm in doc["config"]["traffic"]:
        p = arm["params"]
        lines.append(
            f"  arm {arm['arm_id']:<20} {arm['weight']:.4f} {arm['role']:<11} "
            f"{p['model']} {p['prompt_id']} t={p['temperature']}"
        )
    lines.append(f"  by {doc['created_by']} at {doc['created_at']}: {doc['reason']}")
    lines.append(f"  run_id={doc['run_id']} checksum={doc['checksum']}")
    return "\n".join(lines)


def _show(args: argparse.Namespace) -> None:
    with _store() as store:
        doc = store.get(args.use_case, args.version).to_document()
    emit(doc, as_json=args.json, human=_human_version)


def _list(args: argparse.Namespace) -> None:
    with _store() as store:
        rows = [
            {"use_case": use_case, "production_version": production,
             "latest_version": store.latest_version(use_case)}
            for use_case, production in store.production_versions().items()
        ]  # fmt: skip

    def human(items: list[dict[str, Any]]) -> str:
        if not items:
            return "registry is empty"
        return "\n".join(
            f"{r['use_case']:<24} production=v{r['production_version']} "
            f"latest=v{r['latest_version']}"
            for r in items
        )

    emit(rows, as_json=args.json, human=human)


def _night_of(version: Any) -> str:
    """The night a version was computed for (its ``run_key`` ``night-YYYY-MM-DD``), or "-"."""
    run_key = str(version.config.metadata.get("run_key", ""))
    return run_key.removeprefix("night-") if run_key.startswith("night-") else "-"


def _history(args: argparse.Namespace) -> None:
    with _store() as store:
        entries = store.history(args.use_case)
        nights = {v.version: _night_of(v) for v in store.versions_of(args.use_case)}
    if not entries:
        raise CommandError(f"no history for use case {args.use_case!r}")
    rows = [to_jsonable(e) | {"night": nights.get(e.version, "-")} for e in entries]

    def human(items: list[dict[str, Any]]) -> str:
        lines = [
            f"{'night':<10}  {'time (UTC)':<25} {'ver':<5} {'action':<9} "
            f"{'from':>10} -> {'to':<10} who: why"
        ]
        lines += [
            f"{e['night']:<10}  {e['at']:<25} v{e['version']:<4} {e['action']:<9} "
            f"{e['from_state'] or '-':>10} -> {e['to_state']:<10} {e['actor']}: {e['reason']}"
            for e in items
        ]
        return "\n".join(lines)

    emit(rows, as_json=args.json, human=human)


_ROLE = {"approve": "approve", "reject": "approve", "promote": "promote"}


def _transition(action: str) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        promote_too = action == "approve" and args.promote
        actor = _actor(args, _ROLE[action], *(["promote"] if promote_too else []))
        extra = _expected(args) if action == "promote" or promote_too else {}
        with _store() as store:
            if action == "promote":
                version = store.promote(
                    args.use_case, args.version, actor=actor, comment=args.comment, **extra
                )
            else:
                method = getattr(store, action)
                version = method(args.use_case, args.version, actor=actor, comment=args.comment)
            if promote_too:
                version = store.promote(
                    args.use_case, args.version, actor=actor, comment=args.comment, **extra
                )
        emit(version.to_document(), as_json=args.json, human=_human_version)

    return run


def _rollback(args: argparse.Namespace) -> None:
    actor = _actor(args, "promote")
    with _store() as store:
        version = store.rollback(
            args.use_case, actor=actor, reason=args.reason, to_version=args.to_version,
            **_expected(args),
        )  # fmt: skip
    emit(version.to_document(), as_json=args.json, human=_human_version)


def _load_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read {what} {path}: {exc}") from exc


def _parse_guardrails(text: str) -> dict[str, bool]:
    result: dict[str, bool] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or value not in {"pass", "fail"}:
            raise CommandError(f"--guardrails expects name=pass|fail items, got {item!r}")
        result[name] = value == "pass"
    return result


def _publish(args: argparse.Namespace) -> None:
    from tasks.registry.model import RegistryConfig
    from tasks.registry.policy import submit

    actor = _actor(args, "propose")
    with _store() as store:
        config = RegistryConfig.from_dict(_load_json(args.file, "config file"))
        evidence = _load_json(args.evidence, "evidence file") if args.evidence else None
        expected = (
            store.latest_version(args.use_case)
            if args.expected_version is None
            else args.expected_version
        )
        common: dict[str, Any] = {
            "expected_version": expected,
            "actor": actor,
            "reason": args.reason,
            "run_id": args.run_id,
            "evidence": evidence,
        }
        if args.guardrails is None:
            version = store.publish(args.use_case, config, **common)
            emit(version.to_document(), as_json=args.json, human=_human_version)
            return
        result = submit(
            store, args.use_case, config, guardrails=_parse_guardrails(args.guardrails), **common
        )
    emit(
        result,
        as_json=args.json,
        human=lambda r: f"{r.use_case} v{r.version}: {r.decision} ({r.state}): {r.reason}",
    )


def _snapshot(args: argparse.Namespace) -> None:

    with _store() as store:
        directory = Path(args.out) if args.out else None
        if args.use_case:
            paths = []
            for use_case in args.use_case:
                paths.append(store.write_snapshot(use_case, directory))
        else:
            paths = store.write_snapshots(directory)
    emit(
        {"snapshots": [str(p) for p in paths]},
        as_json=args.json,
        human=lambda d: "\n".join(d["snapshots"]) or "no production configuration to snapshot",
    )


def _init(args: argparse.Namespace) -> None:
    from tasks.core.settings import load_settings
    from tasks.registry.auth import ROLES, add_principal, tokens_path
    from tasks.registry.errors import RegistryError

    roles = [r.strip() for r in args.roles.split(",") if r.strip()] if args.roles else list(ROLES)
    path = tokens_path(load_settings())
    try:
        principal = add_principal(path, args.principal or _os_user(), roles, replace=args.replace)
    except RegistryError as exc:
        raise CommandError(f"{type(exc).__name__}: {exc}") from exc
    result = {
        "principal": principal.name,
        "roles": sorted(principal.roles),
        "tokens_file": str(path),
    }
    emit(
        result,
        as_json=args.json,
        human=lambda r: (
            f"token for principal {r['principal']} (roles: {', '.join(r['roles'])}) written to "
            f"{r['tokens_file']} (mode 0600); the API server reads it, HTTP clients send it as "
            "a bearer token"
        ),
    )


def _serve(args: argparse.Namespace) -> None:
    from tasks.core.settings import load_settings
    from tasks.registry.api import serve
    from tasks.registry.errors import RegistryError

    settings = load_settings()

    def ready(url: str) -> None:
        print(f"registry API on {url} (Ctrl-C to stop)", flush=True)

    try:
        serve(
            settings, host=args.host, port=args.port, refresh_interval=args.refresh_interval,
            allow_remote=args.allow_remote, on_ready=ready,
        )  # fmt: skip
    except RegistryError as exc:
        raise CommandError(f"{type(exc).__name__}: {exc}") from exc


Adder = Callable[[str, str, Callable[[argparse.Namespace], None]], Any]


def _who(p: argparse.ArgumentParser, reason_flag: str) -> None:
    p.add_argument(
        "--as", dest="as_name", default=None,
        help="principal in the tokens file (default: LLMOPT_REGISTRY_TOKEN's, or the only one)",
    )  # fmt: skip
    p.add_argument(reason_flag, required=True, help="why (audit)")
    add_json_flag(p)


def _precondition(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--expected-production", default=None,
        help="refuse unless production is this version (or 'none')",
    )  # fmt: skip


def _register_writes(add: Adder) -> None:
    """approve, reject, promote, rollback, publish: the commands that act as a principal."""
    for action, text in (
        ("approve", "approve a candidate"),
        ("reject", "reject a candidate"),
        ("promote", "make an approved version production"),
    ):
        p = add(action, text, _transition(action))
        p.add_argument("use_case", help="the use case")
        p.add_argument("version", type=int, help="the version number (see registry history)")
        _who(p, "--comment")
        if action == "approve":
            p.add_argument("--promote", action="store_true", help="also make it production")
        if action != "reject":
            _precondition(p)

    p = add("rollback", "put an earlier approved version back in production", _rollback)
    p.add_argument("use_case", help="the use case")
    p.add_argument("--to-version", type=int, default=None, help="default: last good approved")
    _precondition(p)
    _who(p, "--reason")

    p = add("publish", "publish a candidate from a JSON config file", _publish)
    p.add_argument("use_case", help="the use case")
    p.add_argument("--file", required=True, help="config JSON (RegistryConfig.to_dict format)")
    p.add_argument(
        "--expected-version", type=int, default=None, help="latest version you saw (default: now)"
    )
    p.add_argument("--run-id", default=None, help="MLflow run id (provenance)")
    p.add_argument("--evidence", default=None, help="JSON file with the evidence object")
    p.add_argument(
        "--guardrails",
        default=None,
        help="apply the approval policy: name=pass|fail,... (omit to only publish)",
    )
    _who(p, "--reason")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``llmopt registry ...`` and its actions.

    Args:
        subparsers: the CLI's top-level subcommands.
    """
    parser = subparsers.add_parser(
        "registry", help="config registry: init, approve, reject, rollback, history, show, serve"
    )
    sub = parser.add_subparsers(dest="registry_command", metavar="ACTION", required=True)

    def add(name: str, help_text: str, handler: Callable[[argparse.Namespace], None]) -> Any:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(handler=guarded(handler))
        return p

    p = add("show", "show a version (default: production)", _show)
    p.add_argument("use_case", help="the use case")
    p.add_argument("--version", default="production", help="number or production|candidate|latest")
    add_json_flag(p)

    p = add("list", "use cases with their production and latest versions", _list)
    add_json_flag(p)

    p = add("history", "audit trail of a use case", _history)
    p.add_argument("use_case", help="the use case")
    add_json_flag(p)

    _register_writes(add)

    p = add("snapshot", "rewrite the JSON snapshot files of production versions", _snapshot)
    p.add_argument(
        "use_case", nargs="*", help="use cases (default: every use case with a production version)"
    )
    p.add_argument("--out", default=None, help="folder (default: settings.registry_snapshot_dir)")
    add_json_flag(p)

    p = add("init", "generate a write token for a principal into the tokens file (0600)", _init)
    p.add_argument("--principal", default=None, help="name (default: your login)")
    p.add_argument("--roles", default=None, help="comma-separated: propose,approve,promote (all)")
    p.add_argument("--replace", action="store_true", help="new token for an existing principal")
    add_json_flag(p)

    p = add("serve", "serve the HTTP JSON API", _serve)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--refresh-interval", type=float, default=0.25, help="seconds")
