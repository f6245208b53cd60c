"""Each benchmark's smoke mode runs as a program, so that the scripts never rot.

Speed targets live in the benchmarks themselves (and benchmarks/RESULTS.md), not here:
these tests check only that each script runs to its report on a tiny load, and that the
report has its shape (benchmarks/detection_quality.py has its own test module).
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


def section(output: str, heading: str) -> list[str]:
    """The lines of the RESULTS.md section a script printed (it writes none in smoke mode)."""
    body = output.split(f"## {heading}\n", 1)[1].strip().splitlines()
    assert body[0].startswith("**Claim:** ")
    assert any(line.startswith("- Measured ") for line in body)
    assert any(line.startswith("- Command: `python benchmarks/") for line in body)
    return body


def table_row(lines: list[str], *first_cells: str) -> list[str]:
    prefix = "| " + " | ".join(first_cells) + " |"
    row = next(line for line in lines if line.startswith(prefix))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_bench_idle_smoke_reports_every_variant() -> None:
    output = run_smoke("bench_idle.py", "--no-write")
    lines = section(output, "bench_idle: idle cost at scale")
    labels = (
        "no heartbeat (streams)",
        "per-task heartbeat (streams)",
        "Protocol + ticker (floor)",
        "websockets",
        "pulsewire",
    )
    for label in labels:
        row = table_row(lines, label, "asyncio")
        assert row[2] == "50", row  # every connection held
        assert row[-1] == "0 / 0", row  # none lost or closed
    assert any(line.startswith("- Same-round ratios") for line in lines)


def test_bench_anyio_idle_smoke_measures_both_drivers() -> None:
    output = run_smoke("bench_anyio_idle.py")
    lines = section(
        output, "bench_anyio_idle: the anyio driver's idle CPU against the asyncio driver's"
    )
    for label in ("asyncio driver", "anyio driver (asyncio backend)"):
        row = table_row(lines, label)
        assert row[-1] == "0", row  # no false death
        assert float(row[4]) > 0.5, row  # the heartbeat ran: exchanges per connection-second
    assert any("anyio / asyncio idle CPU" in line for line in lines)


def test_bench_idle_compares_another_build_in_the_same_rounds() -> None:
    # The "other build" is this interpreter again: the plumbing is under test, not speed.
    compare = f"same={sys.executable}"
    output = run_smoke("bench_idle.py", "--variants", "floor,pulsewire", "--compare", compare)
    lines = section(output, "bench_idle: idle cost at scale")
    assert table_row(lines, "pulsewire@same", "asyncio")[-1] == "0 / 0"
    ratios = next(line for line in lines if line.startswith("- Same-round ratios"))
    assert "pulsewire / pulsewire@same: **" in ratios
    assert "pulsewire@same / floor: **" in ratios
    assert any(line.startswith("- `pulsewire@same` ran pulsewire ") for line in lines)


def test_bench_idle_reports_policy_auto_alone_under_its_own_heading() -> None:
    # Policy() against Policy.auto() only: a section of its own, which must not replace
    # the run with the baselines in RESULTS.md.
    output = run_smoke("bench_idle.py", "--variants", "pulsewire,auto")
    assert "## bench_idle: idle cost at scale\n" not in output
    lines = section(output, "bench_idle, Policy.auto(): idle cost against Policy()")
    assert lines[0].startswith("**Claim:** at 10,000 idle connections, Policy.auto() costs")
    assert table_row(lines, "pulsewire Policy.auto()", "asyncio")[-1] == "0 / 0"
    ratios = next(line for line in lines if line.startswith("- Same-round ratios"))
    assert "pulsewire / pulsewire@auto: **" in ratios


def test_bench_throughput_smoke_compares_pulsewire_with_raw_streams() -> None:
    output = run_smoke("bench_throughput.py", "--loops", "asyncio")
    lines = section(output, "bench_throughput: throughput")
    header = table_row(lines, "loop", "workload")
    row = dict(zip(header, table_row(lines, "asyncio", "64 B"), strict=True))
    assert row["pulsewire / raw"].endswith("x")
    assert float(row["pulsewire msg/s"].replace(",", "")) > 0


@pytest.mark.skipif(sys.platform != "linux", reason="uses SIGSTOP on a subprocess (POSIX)")
def test_bench_detection_under_load_smoke_convicts_the_frozen_peer() -> None:
    output = run_smoke("bench_detection_under_load.py")
    lines = section(output, "bench_detection_under_load: detection under load")
    row = table_row(lines, "asyncio", "51")
    assert row[4] == "timeout"
    assert row[5] == "0"  # false deaths
    assert any(line.startswith("- Target: PASS") for line in lines)


def test_model_idle_smoke_times_pulsewire_auto_and_the_floor() -> None:
    output = run_smoke("model_idle.py")
    for kind in ("floor", "pulsewire", "auto"):
        row = next(line for line in output.splitlines() if line.startswith(f"| {kind} |"))
        exchanges = int(row.split("|")[2])
        # 200 pairs for 1 s at a 1 s heartbeat (pulsewire pings up to a quarter early).
        assert 150 <= exchanges <= 300, row
