"""The README and the docs name only files, ``make`` targets and ``llmopt`` commands that exist.

Checked in README.md, every docs/*.md, mlflow/README.md and deployments/README.md:

* **paths** in inline code and fenced code blocks whose first segment is a top-level entry of
  the repository (``tasks/...``, ``data/...``, ``Makefile``), bare source file names
  (``DESIGN.md``, ``search.toml``) and relative link targets: the file or folder exists, or it
  is a git-ignored runtime location (``data/warehouse.duckdb``, ``var/demo/``);
* **Python modules** named in inline code (``tasks.core.config``,
  ``strategies.experiments.WelchTest``): importable, and the attribute exists;
* **make targets** (``make test-fast``): a target of the Makefile;
* **llmopt sub-commands** (``llmopt registry approve|reject``): known to
  :func:`flows.cli.build_parser`, level by level.

Placeholders (``<name>``, ``{use_case}``, ``...``, ``ID``) are not checked.
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

from flows.cli import build_parser
from tasks.core.settings import REPO_ROOT

TOP_LEVEL = {
    "Makefile",
    "README.md",
    "pyproject.toml",
    "constraints.txt",
    "data",
    "deployments",
    "docs",
    "flows",
    "mlflow",
    "strategies",
    "tasks",
    "tests",
    "var",
}
SOURCE_SUFFIXES = (".py", ".md", ".toml", ".yaml", ".yml", ".sql", ".txt")
_PATH = re.compile(r"^[\w.\-*]+(?:/[\w.\-*]*)*$")
_MODULE = re.compile(r"^(?:flows|tasks|strategies)(?:\.\w+)+$")
_PLACEHOLDER = re.compile(r"[<>{}$…]|\.\.\.|^[A-Z][A-Z_]+$|^\[")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def doc_files() -> list[Path]:
    """Every page the check covers (the two folder READMEs even when still missing)."""
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    return [*pages, REPO_ROOT / "mlflow" / "README.md", REPO_ROOT / "deployments" / "README.md"]


def code_spans(text: str) -> tuple[list[str], list[str]]:
    """``(inline code spans, lines of fenced code blocks)`` of a Markdown text."""
    inline, block, _ = _split(text)
    return inline, block


def prose_words(text: str) -> list[str]:
    """Words of the text outside code and link targets (``DESIGN.md §3`` in a sentence)."""
    return [w for line in _split(text)[2] for w in _LINK.sub("]", line).split()]


def _split(text: str) -> tuple[list[str], list[str], list[str]]:
    inline: list[str] = []
    block: list[str] = []
    prose: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            block.append(line)
        else:
            prose.append(re.sub(r"`[^`]+`", " ", line))
            # "\|" is a literal "|" inside a Markdown table cell
            inline += [span.replace("\\|", "|") for span in re.findall(r"`([^`]+)`", line)]
    return inline, block, prose


@cache
def _ignored(rel: str) -> bool:
    # a missing folder matches a "dir/" pattern only when named with a file inside it
    for probe in (rel, f"{rel}/probe"):
        done = subprocess.run(
            ["git", "check-ignore", "-q", "--no-index", probe], cwd=REPO_ROOT, check=False
        )
        if done.returncode == 0:
            return True
    return False


def path_problem(token: str, page: Path) -> str | None:
    """Why ``token`` names a path that does not exist, or None (exists / not a path claim)."""
    token = re.sub(r"^--?[\w-]+=", "", token).strip("'\"(),;.") if token else token
    token = token.split(":", 1)[0].split("#", 1)[0]
    if not token or _PLACEHOLDER.search(token) or "://" in token or not _PATH.match(token):
        return None
    first = token.split("/", 1)[0]
    if "/" not in token and not token.endswith(SOURCE_SUFFIXES):
        return None
    if "/" in token and first not in TOP_LEVEL:
        return None  # a path inside a library, an artifact or a run folder, not the repo's
    candidates = [REPO_ROOT / token] if "/" in token else [REPO_ROOT / token, page.parent / token]
    if "/" not in token:
        tracked = _tracked_names()
        if token in tracked:
            return None
    for candidate in candidates:
        if "*" in token:
            if list(REPO_ROOT.glob(token)):
                return None
        elif candidate.exists() or _ignored(token.rstrip("/")):
            return None
    return f"path `{token}` does not exist"


@cache
def _tracked_names() -> frozenset[str]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    names = {Path(p).name for p in out.splitlines()}
    names |= {
        p.name
        for folder in ("flows", "tasks", "strategies", "tests", "docs", "data")
        for p in (REPO_ROOT / folder).rglob("*")
        if p.is_file()
    }
    return frozenset(names)


def link_problem(target: str, page: Path) -> str | None:
    """Why a relative Markdown link target does not resolve, or None."""
    if re.match(r"^[a-z][a-z+.-]*:", target) or target.startswith("#"):
        return None
    path = target.split("#", 1)[0]
    if not path or (page.parent / path).exists():
        return None
    return f"link `{target}` does not resolve from {page.parent}"


def module_problem(span: str) -> str | None:
    """Why a dotted name under flows/tasks/strategies does not import, or None."""
    name = span.split("(", 1)[0].strip()
    if not _MODULE.match(name):
        return None
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return f"`{name}`: {'.'.join(parts[:cut])} has no attribute {attr!r}"
            obj = getattr(obj, attr)
        return None
    return f"`{name}`: no such module"


@cache
def make_targets() -> frozenset[str]:
    """Targets of the Makefile."""
    text = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z0-9_\-]+)\s*:(?!=)", text, flags=re.M))
    for phony in re.findall(r"^\.PHONY\s*:(.*)$", text, flags=re.M):
        targets |= set(phony.split())
    return frozenset(targets)


def make_problem(tokens: list[str]) -> str | None:
    """``tokens`` follow a ``make`` word: why a target is unknown, or None."""
    for token in tokens:
        if token.startswith("-") or "=" in token or _PLACEHOLDER.search(token):
            continue
        if token in {"&&", "||", ";", "|", "#"} or token.startswith("#"):
            return None
        if token not in make_targets():
            return f"`make {token}`: no such target in the Makefile"
    return None


def _subparsers(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def llmopt_problem(tokens: list[str]) -> str | None:
    """``tokens`` follow an ``llmopt`` word: why a sub-command is unknown, or None."""
    parser = build_parser()
    path = ["llmopt"]
    for token in tokens:
        action = _subparsers(parser)
        if action is None or token.startswith("-") or _PLACEHOLDER.search(token):
            return None
        if token in {"&&", "||", ";", "|", ">", "2>&1"}:
            return None
        choices = token.strip(".,;:)").split("|")
        unknown = [c for c in choices if c not in action.choices]
        if unknown:
            known = ", ".join(sorted(action.choices))
            return f"`{' '.join(path)} {token}`: no sub-command {unknown[0]!r} (known: {known})"
        parser = action.choices[choices[0]]
        path.append(choices[0])
    return None


_SEPARATORS = {"$", "&&", "||", ";", "|", "("}


def _after(words: list[str], name: str) -> list[list[str]]:
    """Arguments of ``name`` where it stands as a command (first, after ``&&``, ``$``, ``X=y``),
    not as a word in prose or a comment (``also make it production``)."""
    out = []
    for i, word in enumerate(words):
        if word != name and not word.endswith(f"/{name}"):
            continue
        before = words[i - 1] if i else None
        if before is None or before in _SEPARATORS or re.match(r"^[A-Z_]+=\S*$", before):
            out.append(words[i + 1 :])
    return out


def page_problems(page: Path) -> list[str]:
    """Every stale reference of one page, as ``line-free`` messages (unique, in order)."""
    text = page.read_text(encoding="utf-8")
    inline, block = code_spans(text)
    problems: list[str] = []
    for span in [*inline, *block]:
        words = span.split()
        for tokens in _after(words, "llmopt"):
            problems.append(llmopt_problem(tokens) or "")
        for tokens in _after(words, "make"):
            problems.append(make_problem(tokens) or "")
        for word in words:
            problems.append(path_problem(word, page) or "")
    for word in prose_words(text):
        problems.append(path_problem(word.strip("*_[]"), page) or "")
    for span in inline:
        problems.append(module_problem(span) or "")
    for target in _LINK.findall(text):
        problems.append(link_problem(target, page) or "")
    return list(dict.fromkeys(p for p in problems if p))


# ------------------------------------------------------------------ the checker can fail
def test_checker_flags_a_missing_path_a_stale_module_target_and_command(tmp_path: Path) -> None:
    page = REPO_ROOT / "docs" / "probe.md"  # never written: only its folder is used
    assert path_problem("DESIGN.md", page) == "path `DESIGN.md` does not exist"
    assert path_problem("tests/fixtures/litellm_spend_logs.json", page)
    assert path_problem("tasks/core/no_such_module.py:load", page)
    assert path_problem("tasks/core/config.py:load_config", page) is None
    assert path_problem("data/warehouse.duckdb", page) is None  # git-ignored runtime file
    assert path_problem("data/config/<name>.toml", page) is None  # placeholder
    assert path_problem("orm/bulk_persistence.py", page) is None  # inside a library
    assert link_problem("registry.md", page) is None
    assert link_problem("../README.md#configuration", page) is None
    assert link_problem("registy.md", page)
    assert module_problem("tasks.core.config.load_config") is None
    assert module_problem("tasks.core.config.load_konfig")
    assert module_problem("tasks.monitoring_old")
    assert make_problem(["test"]) is None
    assert make_problem(["bench", "QUICK=--quick"]) is None
    assert make_problem(["tests"]) == "`make tests`: no such target in the Makefile"
    assert llmopt_problem(["registry", "approve|reject", "ID"]) is None
    assert llmopt_problem(["config", "check", "--json"]) is None
    assert llmopt_problem(["registry", "aprove"])
    assert llmopt_problem(["experiment"])

    bad = tmp_path / "bad.md"
    bad.write_text(
        "Run `make tests`, then `llmopt monitr --as-of D`.\n"
        "See [the guide](nowhere.md) and `DESIGN.md`, or tasks/core/gone.py (DESIGN.md §3).\n"
        "```bash\nmake demo\n.venv/bin/llmopt config chek\n```\n"
    )
    found = page_problems(bad)
    assert len(found) == 6, found
    assert "path `tasks/core/gone.py` does not exist" in found
    assert any("config chek" in p for p in found) and any("monitr" in p for p in found)


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_page_names_only_existing_files_targets_and_commands(page: Path) -> None:
    if not page.exists():
        pytest.xfail(f"{page.relative_to(REPO_ROOT)} is not written yet (issue 11)")
    problems = page_problems(page)
    assert problems == [], f"{page.relative_to(REPO_ROOT)}:\n  " + "\n  ".join(problems)


def test_readme_stays_a_newcomers_page() -> None:
    lines = (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; reference goes to docs/"
    headings = {line[3:].strip() for line in lines if line.startswith("## ")}
    for needed in ("The two commands", "The loop", "Configuration", "Development"):
        assert needed in headings


def test_every_docs_page_is_in_the_index() -> None:
    index = (REPO_ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    linked = set(_LINK.findall(index))
    pages = {p.name for p in (REPO_ROOT / "docs").glob("*.md") if p.name != "README.md"}
    assert sorted(pages - linked) == []
