"""The benchmarks are not run by the suite (they take minutes and want a quiet machine), but
they must keep importing: they reach into the services' own statements, which change."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted(
    path.stem
    for path in (Path(__file__).parents[1] / "bench").glob("*.py")
    if not path.stem.startswith("_")
)


def test_there_are_benchmarks() -> None:
    assert {"ledger_append", "transfers", "transparency"} <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_benchmark_imports(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    assert callable(getattr(module, "main", None)), f"bench.{name} has no main()"
