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


def speedup_verdict(
    tmp_path: Path, preset: str, idle: dict[str, float], hours: float, deaths: dict[str, int]
) -> str:
    """The report's speed-up line for ``preset``: idle-blackhole medians, lossy-link deaths."""
    raw = {
        "scenarios": {
            "idle": {
                key: [{"seconds": seconds, "reason": "timeout", "source": "kernel"}] * 3
                for key, seconds in idle.items()
            }
        },
        "lossy": {
            "here": {
                key: {
                    "connections": 20,
                    "seconds": hours * 3600 / 20,
                    "exposure": hours * 3600,
                    "deaths": [["timeout", "kernel", 1.0]] * count,
                    "stats": [],
                }
                for key, count in deaths.items()
            }
        },
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
    found = [
        line
        for line in run.stdout.splitlines()
        if line.startswith(f"- `{preset}` ") and "at the same false-death rate" in line
    ]
    assert len(found) == 1, run.stdout
    return found[0]


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
