"""benchmarks/detection.py: the smoke run works, so the benchmark cannot rot unnoticed.

``--smoke`` runs the idle blackhole and the graceful exit once, for pulsewire's recommended
and LAN presets, kernel keepalive 1/1/3 and websockets, plus a few seconds of the 10 % loss
link, in about a minute, and prints the report without writing any file. Its ``--json`` dump,
rendered again with ``--report-from`` (which tests/test_bench_detection_targets.py feeds
crafted dumps), gives the same tables and verdicts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pulsewire.cli.netns import netns_available

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "detection.py"


def test_detection_benchmark_smoke_run(tmp_path: Path) -> None:
    reason = netns_available()
    if reason is not None:
        pytest.skip(reason)
    results, docs, raw = tmp_path / "RESULTS.md", tmp_path / "detection.md", tmp_path / "raw.json"
    smoke = ["--smoke", "--results", str(results), "--docs", str(docs), "--json", str(raw)]
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *smoke],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    print(run.stdout)
    assert run.returncode == 0, run.stderr[-3000:]
    report = run.stdout
    assert "| detector | idle blackhole | graceful exit (FIN) |" in report
    lan_row = next(
        line for line in report.splitlines() if line.startswith("| pulsewire Policy.lan()")
    )
    assert "TIMEOUT hb" in lan_row
    assert "EOF kernel" in lan_row
    assert "### 10 % loss: false deaths" in report
    assert "`Policy.lan()` detects every fault" in report
    assert "| Policy.auto() |" in report  # the summary: the recommended policy's row
    assert not results.exists(), "--smoke must not write the results file"
    assert not docs.exists()

    again = subprocess.run(
        [sys.executable, str(SCRIPT), "--report-from", str(raw)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    tables = "### Detection time"  # everything from here on: the header names the command
    assert again.stdout[again.stdout.index(tables) :] == report[report.index(tables) :]
