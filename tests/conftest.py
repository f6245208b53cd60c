"""Fixtures shared by the top-level tests."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def import_benchmark() -> Iterator[Callable[[str], ModuleType]]:
    """Import a script of benchmarks/ (and its helpers) by module name, for its functions.

    Only tests/test_bench_detection_targets.py still needs it; the other benchmark tests run
    the scripts as programs. Remove it once that test does the same.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        yield importlib.import_module
