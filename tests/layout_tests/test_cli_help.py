"""Every option and argument of every ``llmopt`` sub-command says what it is in ``--help``."""

from __future__ import annotations

import argparse

from flows.cli import build_parser


def _undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _undocumented(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            out.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return out


def test_the_check_finds_an_option_without_help() -> None:
    parser = argparse.ArgumentParser(prog="probe")
    sub = parser.add_subparsers()
    cmd = sub.add_parser("cmd")
    cmd.add_argument("--plain")
    cmd.add_argument("--told", help="says what it is")
    cmd.add_argument("name")
    assert _undocumented(parser, "probe") == ["probe cmd --plain", "probe cmd name"]


def test_every_llmopt_option_has_help_text() -> None:
    assert _undocumented(build_parser(), "llmopt") == []
