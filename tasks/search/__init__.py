"""search: see the modules."""

from __future__ import annotations
