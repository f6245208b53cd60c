"""Every example runs, against real processes on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def echo_server() -> Iterator[tuple[subprocess.Popen[str], int]]:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo_server.py"), "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("READY "), line
        yield process, int(line.split()[1])
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.communicate(timeout=10)


def test_echo_client_gets_every_echo(echo_server: tuple[subprocess.Popen[str], int]) -> None:
    _, port = echo_server
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "echo_client.py"), str(port), "3", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert [line.split("  ")[0] for line in result.stdout.splitlines()] == [
        "echo: hello 0",
        "echo: hello 1",
        "echo: hello 2",
    ]


def test_echo_client_reports_a_frozen_server_as_timeout(
    echo_server: tuple[subprocess.Popen[str], int],
) -> None:
    server, port = echo_server
    client = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo_client.py"), str(port), "1000", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline().startswith("echo: hello 0")
        os.kill(server.pid, signal.SIGSTOP)
        output, _ = client.communicate(timeout=30)
    finally:
        client.kill()
        client.communicate(timeout=10)
    assert client.returncode == 1
    assert "server is gone: timeout (heartbeat)" in output
