"""Each benchmark's smoke mode runs, so that the scripts never rot.

Speed targets live in the benchmarks themselves (and benchmarks/RESULTS.md), not here:
these tests check only that each script runs to its report on a tiny load.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_smoke(script: str, *extra: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke", *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_bench_idle_smoke_reports_every_variant() -> None:
    output = run_smoke("bench_idle.py", "--no-write")
    for variant in ("no heartbeat", "per-task heartbeat", "Protocol + ticker", "pulsewire"):
        assert variant in output


def test_bench_throughput_smoke_compares_pulsewire_with_raw_streams() -> None:
    output = run_smoke("bench_throughput.py", "--loops", "asyncio")
    assert "| asyncio | 64 B | pulsewire |" in output
    assert "pulsewire / raw" in output


@pytest.mark.skipif(sys.platform != "linux", reason="uses SIGSTOP on a subprocess (POSIX)")
def test_bench_detection_under_load_smoke_convicts_the_frozen_peer() -> None:
    output = run_smoke("bench_detection_under_load.py")
    assert "| asyncio | 51 |" in output
    assert "PASS" in output


def test_model_idle_smoke_times_pulsewire_and_the_floor() -> None:
    output = run_smoke("model_idle.py")
    for kind in ("floor", "pulsewire"):
        row = next(line for line in output.splitlines() if line.startswith(f"| {kind} |"))
        exchanges = int(row.split("|")[2])
        # 200 pairs for 1 s at a 1 s heartbeat (pulsewire pings up to a quarter early).
        assert 150 <= exchanges <= 300, row
