"""``llmopt registry ...``: human approval, rollback, inspection, publishing and the read API."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.cli_support import CommandError, add_json_flag, emit, guarded

if TYPE_CHECKING:
    from tasks.registry.store import RegistryStore

__all__ = ["register"]


def _default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user database in some containers
        return "cli:unknown"


@contextmanager
def _store() -> Iterator[RegistryStore]:
    """The store from settings; registry/config errors become one-line CLI errors."""
    from tasks.core.config import ConfigError
    from tasks.core.settings import load_settings
    from tasks.registry.model import ConfigValidationError
    from tasks.registry.store import RegistryError, RegistryStore

    store = RegistryStore.from_settings(load_settings())
    try:
        yield store
    except (RegistryError, ConfigValidationError, ConfigError) as exc:
        raise CommandError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        store.dispose()


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
    from tasks.registry.store import NotFoundError

    rows = []
    with _store() as store:
        for use_case in store.use_cases():
            try:
                production: int | None = store.get(use_case).version
            except NotFoundError:
                production = None
            rows.append(
                {
                    "use_case": use_case,
                    "production_version": production,
                    "latest_version": store.latest_version(use_case),
                }
            )

    def human(items: list[dict[str, Any]]) -> str:
        if not items:
            return "registry is empty"
        return "\n".join(
            f"{r['use_case']:<24} production=v{r['production_version']} "
            f"latest=v{r['latest_version']}"
            for r in items
        )

    emit(rows, as_json=args.json, human=human)


def _history(args: argparse.Namespace) -> None:
    with _store() as store:
        entries = store.history(args.use_case)
    if not entries:
        raise CommandError(f"no history for use case {args.use_case!r}")

    def human(items: list[Any]) -> str:
        return "\n".join(
            f"{e.at}  v{e.version:<4} {e.action:<9} {e.from_state or '-':>10} -> {e.to_state:<10} "
            f"{e.actor}: {e.reason}"
            for e in items
        )

    emit(entries, as_json=args.json, human=human)


def _transition(action: str) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        with _store() as store:
            method = getattr(store, action)
            version = method(args.use_case, args.version, actor=args.actor, comment=args.comment)
            if action == "approve" and args.promote:
                version = store.promote(
                    args.use_case, args.version, actor=args.actor, comment=args.comment
                )
        emit(version.to_document(), as_json=args.json, human=_human_version)

    return run


def _rollback(args: argparse.Namespace) -> None:
    with _store() as store:
        version = store.rollback(
            args.use_case, actor=args.actor, reason=args.reason, to_version=args.to_version
        )
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
            "actor": args.actor,
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
    from tasks.registry.store import NotFoundError

    with _store() as store:
        directory = Path(args.out) if args.out else None
        if args.use_case:
            paths = []
            for use_case in args.use_case:
                try:
                    paths.append(store.write_snapshot(use_case, directory))
                except NotFoundError as exc:
                    raise CommandError(str(exc)) from exc
        else:
            paths = store.write_snapshots(directory)
    emit(
        {"snapshots": [str(p) for p in paths]},
        as_json=args.json,
        human=lambda d: "\n".join(d["snapshots"]) or "no production configuration to snapshot",
    )


def _serve(args: argparse.Namespace) -> None:
    from tasks.core.settings import load_settings
    from tasks.registry.api import serve

    settings = load_settings()
    if args.host not in {"127.0.0.1", "localhost", "::1"} and (
        settings.registry_token == "dev-token-change-me"
    ):
        print(
            "llmopt: warning: serving beyond loopback with the default write token; "
            "set LLMOPT_REGISTRY_TOKEN",
            file=sys.stderr,
        )

    def ready(url: str) -> None:
        print(f"registry API on {url} (Ctrl-C to stop)", flush=True)

    serve(
        settings,
        host=args.host,
        port=args.port,
        refresh_interval=args.refresh_interval,
        on_ready=ready,
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "registry", help="config registry: approve, reject, rollback, history, show, serve"
    )
    sub = parser.add_subparsers(dest="registry_command", metavar="ACTION", required=True)

    def add(name: str, help_text: str, handler: Callable[[argparse.Namespace], None]) -> Any:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(handler=guarded(handler))
        return p

    def who(p: argparse.ArgumentParser, reason_flag: str) -> None:
        p.add_argument("--actor", default=_default_actor(), help="who does it (audit)")
        p.add_argument(reason_flag, required=True, help="why (audit)")
        add_json_flag(p)

    p = add("show", "show a version (default: production)", _show)
    p.add_argument("use_case")
    p.add_argument("--version", default="production", help="number or production|candidate|latest")
    add_json_flag(p)

    p = add("list", "use cases with their production and latest versions", _list)
    add_json_flag(p)

    p = add("history", "audit trail of a use case", _history)
    p.add_argument("use_case")
    add_json_flag(p)

    for action, text in (
        ("approve", "approve a candidate"),
        ("reject", "reject a candidate"),
        ("promote", "make an approved version production"),
    ):
        p = add(action, text, _transition(action))
        p.add_argument("use_case")
        p.add_argument("version", type=int)
        who(p, "--comment")
        if action == "approve":
            p.add_argument("--promote", action="store_true", help="also make it production")

    p = add("rollback", "put an earlier approved version back in production", _rollback)
    p.add_argument("use_case")
    p.add_argument("--to-version", type=int, default=None, help="default: last good approved")
    who(p, "--reason")

    p = add("publish", "publish a candidate from a JSON config file", _publish)
    p.add_argument("use_case")
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
    who(p, "--reason")

    p = add("snapshot", "rewrite the JSON snapshot files of production versions", _snapshot)
    p.add_argument("use_case", nargs="*")
    p.add_argument("--out", default=None, help="folder (default: settings.registry_snapshot_dir)")
    add_json_flag(p)

    p = add("serve", "serve the HTTP JSON API", _serve)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--refresh-interval", type=float, default=0.25, help="seconds")
