"""Guards for the fixed layout: the rules that keep imports sane for Prefect, MLflow and serving."""

from __future__ import annotations

import ast
import importlib.machinery
import sys
import tomllib
from pathlib import Path

import pytest

from tasks.core.settings import REPO_ROOT

SHADOWING_NAMES = {"mlflow", "optuna", "duckdb", "prefect", "tasks", "strategies", "flows"}
SHADOWING_NAMES |= {"numpy", "scipy", "pandas", "great_expectations", "river", "statsmodels"}


def _imported_top_level_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _python_files(folder: str) -> list[Path]:
    return sorted((REPO_ROOT / folder).rglob("*.py"))


def test_mlflow_package_imports_from_site_packages_not_the_repo_folder() -> None:
    # Resolved as `python -c "import mlflow"` run from the repo root would (the root first on the
    # path), without importing it: the repo's mlflow/ data folder must not shadow the package.
    spec = importlib.machinery.PathFinder.find_spec("mlflow", [str(REPO_ROOT), *sys.path])
    assert spec is not None and spec.origin is not None, spec
    assert "site-packages" in spec.origin, spec.origin
    assert not Path(spec.origin).is_relative_to(REPO_ROOT / "mlflow")


@pytest.mark.parametrize("folder", ["mlflow", "data", "deployments"])
def test_no_python_files_in_data_like_folders(folder: str) -> None:
    offenders = [str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / folder).rglob("*.py")]
    assert offenders == []


def test_strategies_are_pure() -> None:
    forbidden = {"prefect", "duckdb", "mlflow", "tasks", "flows", "sqlalchemy", "requests"}
    files = _python_files("strategies")
    assert files, "strategies/ should contain modules"
    offenders = {
        str(p.relative_to(REPO_ROOT)): sorted(_imported_top_level_modules(p) & forbidden)
        for p in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_imports_run_one_way_flows_tasks_strategies() -> None:
    offenders = [
        str(p.relative_to(REPO_ROOT))
        for p in _python_files("tasks")
        if "flows" in _imported_top_level_modules(p)
    ]
    assert offenders == []


def test_no_flow_module_shadows_a_library_or_our_packages() -> None:
    names = {p.stem for p in (REPO_ROOT / "flows").glob("*.py")}
    names |= {p.name for p in (REPO_ROOT / "flows").iterdir() if p.is_dir()}
    assert names & SHADOWING_NAMES == set()


def test_tests_tree_has_no_init_and_uses_tests_suffixed_folders() -> None:
    tests_root = REPO_ROOT / "tests"
    assert list(tests_root.rglob("__init__.py")) == []
    folders = [
        p
        for p in tests_root.iterdir()
        if p.is_dir() and p.name != "__pycache__" and not p.name.startswith(".")
    ]
    assert folders, "tests should be grouped in *_tests folders"
    # benchmarks/ holds scripts (bench_*.py, run by `make bench`), not tests.
    assert [p.name for p in folders if not p.name.endswith("_tests")] == ["benchmarks"]


BUILTIN_MARKS = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings"}


def test_tests_use_only_marks_registered_in_pyproject() -> None:
    # --strict-markers turns an unregistered mark into a collection error wherever the plugin
    # that registers it is absent (xdist_group marks, which `make test` ignored, stopped
    # `pytest -p no:xdist` from collecting seven modules)
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        lines = tomllib.load(handle)["tool"]["pytest"]["ini_options"]["markers"]
    registered = {line.split(":", 1)[0] for line in lines} | BUILTIN_MARKS
    used: dict[str, set[str]] = {}
    for path in (REPO_ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "mark"
                and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "pytest"
            ):
                used.setdefault(node.attr, set()).add(path.name)
    assert {"slow", "e2e"} <= set(used)  # the scan finds the marks the suite does use
    assert {mark: files for mark, files in used.items() if mark not in registered} == {}


def test_test_file_names_are_unique_across_the_tree() -> None:
    names = [p.name for p in (REPO_ROOT / "tests").rglob("test_*.py")]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert duplicates == []


def test_every_module_starts_with_future_annotations() -> None:
    missing = []
    for folder in ("flows", "tasks", "strategies"):
        for path in _python_files(folder):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            has = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in tree.body)
            if not has and tree.body:
                missing.append(str(path.relative_to(REPO_ROOT)))
    assert missing == []


# The simulator is a tool for the demo, tests and benchmarks: production code never imports it.
SIMULATOR_USERS = {"flows/demo.py", "flows/simulate_commands.py"}


def test_production_code_never_imports_the_simulator() -> None:
    offenders = []
    for folder in ("flows", "tasks", "strategies"):
        for path in _python_files(folder):
            rel = path.relative_to(REPO_ROOT).as_posix()
            if rel.startswith("tasks/simulation/") or rel in SIMULATOR_USERS:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                mods = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                if any(m.startswith("tasks.simulation") for m in mods):
                    offenders.append(rel)
    assert offenders == []


def test_tasks_is_organised_by_capability() -> None:
    loose = sorted(p.name for p in (REPO_ROOT / "tasks").glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules belong in a capability subpackage of tasks/: {loose}"
