"""benchmarks/detection.py's verdict on "3x faster than keepalive at the same false-death
rate": decided on the counts it has, and not decided on a sample too small to rank rungs.

These build the result cells by hand (no namespaces needed): only the arithmetic of the
verdict is under test; tests/faults runs the benchmark itself.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def detection(import_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return import_benchmark("detection")


def _idle(detection: ModuleType, seconds: float) -> object:
    return detection.Cell([detection.Outcome(seconds, "timeout", "kernel")] * 3)


def _cells(detection: ModuleType, hours: float, deaths: dict[str, int]) -> dict[str, object]:
    cells = {}
    for key, count in deaths.items():
        cell = detection.Lossy(connections=20, seconds=hours * 3600 / 20)
        cell.exposure = hours * 3600
        cell.deaths = [("timeout", "kernel", 1.0)] * count
        cells[key] = cell
    return cells


IDLE = {"default": 2.4, "ka3": 3.3, "ka5": 5.4, "ka8": 8.5, "ka12": 12.5}


def test_the_matched_rung_is_the_fastest_with_no_higher_rate(detection: ModuleType) -> None:
    cells = _cells(detection, 5.0, {"default": 0, "ka3": 20, "ka5": 5, "ka8": 0, "ka12": 0})
    idle = {key: _idle(detection, seconds) for key, seconds in IDLE.items()}
    line = detection._speedup("default", cells, idle, "here")
    assert "**PASS**, 3.5x" in line
    assert "1/1/8" in line


def test_a_zero_count_match_on_a_short_run_is_not_decided(detection: ModuleType) -> None:
    # 30 s of 20 connections: 1/1/5 (about one death an hour) shows none by chance, and
    # would be matched; the verdict must not be a FAIL (nor a PASS) on that.
    cells = _cells(detection, 0.17, {"default": 0, "ka3": 6, "ka5": 0, "ka8": 0, "ka12": 0})
    idle = {key: _idle(detection, seconds) for key, seconds in IDLE.items()}
    line = detection._speedup("default", cells, idle, "here")
    assert "**not decided**" in line
    assert "PASS" not in line
    assert "FAIL" not in line


def test_a_match_on_counted_deaths_is_decided_on_a_short_run(detection: ModuleType) -> None:
    # The LAN preset dies of 10 % loss too: it is matched to a rung with deaths of its own,
    # a real rate comparison however short the run.
    cells = _cells(detection, 0.5, {"lan": 10, "ka3": 30, "ka5": 4, "ka8": 0, "ka12": 0})
    idle = {key: _idle(detection, seconds) for key, seconds in {**IDLE, "lan": 0.7}.items()}
    line = detection._speedup("lan", cells, idle, "here")
    assert "**PASS**, 7.7x" in line
