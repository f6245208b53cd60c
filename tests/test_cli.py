"""The command line, run as a user runs it: as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pulsewire", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_detects_every_fault_with_the_right_reason() -> None:
    result = run_cli("demo", "--json", "--interval", "0.2", "--timeout", "1.0")
    assert result.returncode == 0, result.stderr
    by_fault = {row["fault"]: row for row in json.loads(result.stdout)}
    frozen = by_fault["frozen (SIGSTOP)"]
    assert frozen["pulsewire_reason"] == "timeout"
    assert 0.5 <= frozen["pulsewire_seconds"] <= 2.0
    # The frozen process's kernel keeps answering keepalive probes.
    assert frozen["kernel_verdict"] == "still open"
    assert by_fault["killed (SIGKILL)"]["pulsewire_reason"] == "eof"
    assert by_fault["reset (RST)"]["pulsewire_reason"] == "reset"


def test_bad_arguments_exit_2_with_a_one_line_error() -> None:
    result = run_cli("demo", "--interval", "2", "--timeout", "1")
    assert result.returncode == 2
    assert "timeout (1.0 s) must be longer than interval (2.0 s)" in result.stderr
    assert "Traceback" not in result.stderr
