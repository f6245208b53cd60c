"""benchmarks/detection.py's verdict on "3x faster than keepalive at the same false-death
rate": decided on the counts it has, and not decided on a sample too small to rank rungs.

The benchmark runs as a program: ``--report-from`` prints the report of raw measurements
in the JSON format its ``--json`` writes. These craft that JSON (no namespaces needed: only
the arithmetic of the verdict is under test) and read the verdict lines of the report;
tests/faults runs the benchmark itself and checks that its own dump renders the same.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "detection.py"

IDLE = {"default": 2.4, "ka3": 3.3, "ka5": 5.4, "ka8": 8.5, "ka12": 12.5}


def _cells(deaths: dict[str, int], hours: float) -> dict[str, object]:
    return {
        key: {
            "connections": 20,
            "seconds": hours * 3600 / 20,
            "exposure": hours * 3600,
            "deaths": [["timeout", "kernel", 1.0]] * count,
            "stats": [],
        }
        for key, count in deaths.items()
    }


def report(
    tmp_path: Path,
    medians: dict[str, dict[str, float]],
    links: dict[str, dict[str, int]],
    hours: float,
) -> str:
    """The report of crafted measurements: ``medians[fault][detector]`` (three runs of
    that many seconds), ``links[link][detector]`` deaths in ``hours`` connection-hours."""
    raw = {
        "scenarios": {
            fault: {
                key: [{"seconds": seconds, "reason": "timeout", "source": "kernel"}] * 3
                for key, seconds in found.items()
            }
            for fault, found in medians.items()
        },
        "links": [
            {"link": link, "congestion": "here", "cells": _cells(deaths, hours)}
            for link, deaths in links.items()
        ],
    }
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(raw))
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--report-from", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def target(text: str, start: str, contains: str) -> str:
    """The one target line that starts with ``start`` and contains ``contains``."""
    found = [
        line for line in text.splitlines() if line.startswith(f"- {start}") and contains in line
    ]
    assert len(found) == 1, text
    return found[0]


def speedup_verdict(
    tmp_path: Path, preset: str, idle: dict[str, float], hours: float, deaths: dict[str, int]
) -> str:
    """The report's speed-up line for ``preset``: idle-blackhole medians, 10 % loss deaths."""
    text = report(tmp_path, {"idle": idle}, {"loss10": deaths}, hours)
    return target(text, f"`{preset}` ", "at the same false-death rate")


def test_the_matched_rung_is_the_fastest_with_no_higher_rate(tmp_path: Path) -> None:
    deaths = {"default": 0, "ka3": 20, "ka5": 5, "ka8": 0, "ka12": 0}
    line = speedup_verdict(tmp_path, "Policy()", IDLE, 5.0, deaths)
    assert "**PASS**, 3.5x" in line
    assert "1/1/8" in line


def test_a_zero_count_match_on_a_short_run_is_not_decided(tmp_path: Path) -> None:
    # 30 s of 20 connections: 1/1/5 (about one death an hour) shows none by chance, and
    # would be matched; the verdict must not be a FAIL (nor a PASS) on that.
    deaths = {"default": 0, "ka3": 6, "ka5": 0, "ka8": 0, "ka12": 0}
    line = speedup_verdict(tmp_path, "Policy()", IDLE, 0.17, deaths)
    assert "**not decided**" in line
    assert "PASS" not in line
    assert "FAIL" not in line


def test_a_match_on_counted_deaths_is_decided_on_a_short_run(tmp_path: Path) -> None:
    # The LAN preset dies of 10 % loss too: it is matched to a rung with deaths of its own,
    # a real rate comparison however short the run.
    deaths = {"lan": 10, "ka3": 30, "ka5": 4, "ka8": 0, "ka12": 0}
    line = speedup_verdict(tmp_path, "Policy.lan()", {**IDLE, "lan": 0.7}, 0.5, deaths)
    assert "**PASS**, 7.7x" in line


FAST = {
    "idle": {"auto": 0.8, "ws": 2.6},
    "writing": {"auto": 1.15, "ws": 2.7},
    "frozen": {"auto": 0.8, "ws": 2.4},
}


def test_the_recommended_policy_passes_when_fast_on_every_silent_fault(tmp_path: Path) -> None:
    line = target(report(tmp_path, FAST, {}, 5.0), "`Policy.auto()` on a clean link", "")
    assert "**PASS**" in line
    assert "blackhole while writing 1.15 s against 2.70 s, 2.3x" in line


def test_one_slow_fault_fails_the_recommended_policy(tmp_path: Path) -> None:
    slow = {**FAST, "writing": {"auto": 1.25, "ws": 2.7}}  # 2.2x websockets, yet over 1.2 s
    line = target(report(tmp_path, slow, {}, 5.0), "`Policy.auto()` on a clean link", "")
    assert "**FAIL**" in line


def test_fast_but_not_twice_websockets_fails(tmp_path: Path) -> None:
    close = {**FAST, "frozen": {"auto": 1.0, "ws": 1.9}}
    line = target(report(tmp_path, close, {}, 5.0), "`Policy.auto()` on a clean link", "")
    assert "**FAIL**" in line
    assert "1.9x" in line


def test_the_recommended_policy_must_survive_both_lossy_links(tmp_path: Path) -> None:
    links = {"loss10": {"auto": 0, "ws": 4}, "local10": {"auto": 1, "ws": 4}}
    text = report(tmp_path, FAST, links, 5.0)
    assert "**PASS**" in target(text, "`Policy.auto()` has no false death", "10 % loss each")
    local = target(text, "`Policy.auto()` has no false death", "sender-local")
    assert "**FAIL**, 1 in 5.00 h" in local


def test_zero_false_deaths_in_too_few_hours_is_not_decided(tmp_path: Path) -> None:
    text = report(tmp_path, FAST, {"loss10": {"auto": 0}}, 1.0)
    line = target(text, "`Policy.auto()` has no false death", "10 % loss")
    assert "**not decided**" in line
    assert "PASS" not in line


def test_the_summary_compares_with_websockets_at_equal_false_deaths(tmp_path: Path) -> None:
    medians = {fault: {**found, "lan": 0.7} for fault, found in FAST.items()}
    links = {"loss10": {"auto": 0, "lan": 20, "ws": 4}}
    text = report(tmp_path, medians, links, 5.0)
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert "2.3x (writing), no more false deaths" in rows["| Policy.auto()"]
    assert "0 in 5.00 h" in rows["| Policy.auto()"]
    assert "3.4x (frozen), **more** false deaths" in rows["| Policy.lan()"]
    assert "20 in 5.00 h (4/h)" in rows["| Policy.lan()"]
