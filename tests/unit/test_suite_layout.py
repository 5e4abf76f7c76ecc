"""tests/ folders are not packages, so two test modules with one basename collide at collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    clashes = sorted(n for n, c in names.items() if c > 1)
    assert not clashes, f"rename one of each: {clashes} (pytest refuses same-named modules outside packages)"
