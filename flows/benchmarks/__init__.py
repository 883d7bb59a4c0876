"""Benchmark scripts: each measures our code beside a bare DuckDB / scipy baseline in one run."""

from __future__ import annotations
