"""Every module under strategies/ has its docstring examples run by `make test` (issue 11)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import strategies


def _modules() -> list[str]:
    return sorted(
        info.name for info in pkgutil.walk_packages(strategies.__path__, prefix="strategies.")
    )


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_pass(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), raise_on_error=False, verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"


def test_the_walk_finds_the_modules_and_their_examples() -> None:
    names = _modules()
    assert "strategies.experiments.sequential" in names and "strategies.monitor.drift" in names
    attempted = sum(doctest.testmod(importlib.import_module(n)).attempted for n in names)
    assert attempted >= 50, attempted
