"""Every example runs, against real processes on loopback, bounded in time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pulsewire

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

Started = Callable[..., tuple[subprocess.Popen[str], str]]


def readline(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline()


def read_until(process: subprocess.Popen[str], prefix: str, limit: int = 200) -> str:
    """The first line of the process's stdout that starts with ``prefix``."""
    for _ in range(limit):
        line = readline(process)
        if not line:
            break
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line starting with {prefix!r}")


@pytest.fixture
def start() -> Iterator[Started]:
    """Start an example as a subprocess; every one is killed (after SIGCONT) at the end."""
    processes: list[subprocess.Popen[str]] = []

    def start(
        name: str, *args: str, ready: str | None = "READY "
    ) -> tuple[subprocess.Popen[str], str]:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        processes.append(process)
        first = readline(process) if ready is not None else ""
        if ready is not None:
            assert first.startswith(ready), first
        return process, first

    yield start
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
        process.communicate(timeout=10)


def ready_port(line: str) -> int:
    return int(line.split()[1])


# --------------------------------------------------------------------------------------
# echo server and client
# --------------------------------------------------------------------------------------


def test_echo_client_gets_every_echo(start: Started) -> None:
    _, line = start("echo_server.py", "0")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "echo_client.py"), str(ready_port(line)), "3", "0"],
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


def test_echo_client_reports_a_frozen_server_as_timeout(start: Started) -> None:
    server, line = start("echo_server.py", "0")
    client, _ = start("echo_client.py", str(ready_port(line)), "1000", "0.05", ready=None)
    assert readline(client).startswith("echo: hello 0")
    os.kill(server.pid, signal.SIGSTOP)
    output, _ = client.communicate(timeout=30)
    assert client.returncode == 1
    assert "server is gone: timeout (heartbeat)" in output


# --------------------------------------------------------------------------------------
# greeting server (the "write a server" page): hooks, and a clean stop on Ctrl-C/SIGTERM
# --------------------------------------------------------------------------------------


async def _greet_then_stop(server: subprocess.Popen[str], port: int, sig: int) -> pulsewire.Death:
    connection = await pulsewire.connect("127.0.0.1", port, name="tester")
    assert await _next_text(connection) == "hello, tester"
    await connection.send(b"shout")
    assert await _next_text(connection) == "SHOUT"
    os.kill(server.pid, sig)
    async with asyncio.timeout(10):
        return await connection.wait_dead()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_greeting_server_closes_its_connections_in_order_when_stopped(
    start: Started, sig: int
) -> None:
    server, line = start("greeting_server.py", "0")
    death = asyncio.run(_greet_then_stop(server, ready_port(line), sig))
    # An orderly close from the server: GOING_AWAY, not a reset or a silence.
    assert (death.reason, death.source, death.close_code) == (
        pulsewire.Reason.EOF,
        pulsewire.Source.PEER,
        pulsewire.CloseCode.GOING_AWAY,
    )
    output, _ = server.communicate(timeout=10)
    assert server.returncode == 0
    assert output.splitlines()[0] == "tester connected"
    assert "stopping after 1 connection(s)" in output
    assert output.splitlines()[-1] == "stopped"


# --------------------------------------------------------------------------------------
# chat server (a Server subclass)
# --------------------------------------------------------------------------------------


async def _next_text(connection: pulsewire.Connection) -> str:
    async with asyncio.timeout(10):
        return (await connection.recv()).decode()


async def _chat(port: int) -> list[str]:
    policy = pulsewire.Policy(interval=0.5, timeout=2.0)
    seen: list[str] = []
    alice = await pulsewire.connect("127.0.0.1", port, policy=policy, name="alice")
    seen.append(await _next_text(alice))
    bob = await pulsewire.connect("127.0.0.1", port, policy=policy, name="bob")
    seen.append(await _next_text(alice))
    seen.append(await _next_text(bob))
    await alice.send(b"hi bob")
    seen.append(await _next_text(bob))
    carol = await pulsewire.connect("127.0.0.1", port, policy=policy, name="carol")
    seen.append(await _next_text(alice))
    # carol vanishes with a reset (SO_LINGER 0), bob leaves in order.
    carol.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
    )
    carol.abort()
    seen.append(await _next_text(alice))
    await bob.close()
    seen.append(await _next_text(alice))
    await alice.close()
    return seen


def test_chat_server_relays_and_says_why_members_left(start: Started) -> None:
    _, line = start("chat_server.py", "0")
    seen = asyncio.run(_chat(ready_port(line)))
    assert seen == [
        "* alice joined",
        "* bob joined",
        "* bob joined",
        "alice: hi bob",
        "* carol joined",
        "* carol left (reset)",
        "* bob left (eof)",
    ]


# --------------------------------------------------------------------------------------
# reconnecting client (pulsewire.Client)
# --------------------------------------------------------------------------------------


def test_reconnecting_client_logs_each_death_with_its_reason(start: Started) -> None:
    server, line = start("echo_server.py", "0")
    port = ready_port(line)
    client, _ = start("reconnecting_client.py", str(port), ready=None)
    assert read_until(client, "connected").strip() == "connected (connection #1)"
    read_until(client, "echo: message")

    server.kill()  # the kernel closes its sockets: FIN
    server.communicate(timeout=10)
    died = read_until(client, "connection died:")
    assert died.startswith(("connection died: eof (kernel)", "connection died: reset (kernel)"))

    server, _ = start("echo_server.py", str(port))  # back on the same port
    assert read_until(client, "connected").strip() == "connected (connection #2)"
    read_until(client, "echo: message")

    os.kill(server.pid, signal.SIGSTOP)  # frozen: only the heartbeat can tell
    assert read_until(client, "connection died:").startswith(
        "connection died: timeout (heartbeat), silent for 1.0"
    )
    os.kill(server.pid, signal.SIGCONT)
    assert read_until(client, "connected").strip() == "connected (connection #3)"
    read_until(client, "echo: message")


def test_reconnecting_client_stops_after_its_messages(start: Started) -> None:
    _, line = start("echo_server.py", "0")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "reconnecting_client.py"), str(ready_port(line)), "3"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines if line.startswith("echo:")] == [
        "echo: message 0",
        "echo: message 1",
        "echo: message 2",
    ]
    assert lines[-1].startswith("done: 1 connection(s)")


# --------------------------------------------------------------------------------------
# kernel keepalive only
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("linger", "how"), [(False, "eof"), (True, "reset")])
def test_kernel_keepalive_only_reports_how_the_connection_ended(
    start: Started, linger: bool, how: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        client, _ = start("kernel_keepalive_only.py", "127.0.0.1", str(port), ready=None)
        accepted, _ = listener.accept()
        read_until(client, "CONNECTED")
        if linger:
            accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        accepted.close()
        output, _ = client.communicate(timeout=15)
    assert client.returncode == 0
    assert f"connection ended: {how} after" in output


@pytest.mark.skipif(sys.platform != "linux", reason="the report's option names are Linux's")
def test_kernel_keepalive_only_prints_what_the_kernel_applied(start: Started) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        client, _ = start("kernel_keepalive_only.py", "127.0.0.1", str(port), ready=None)
        accepted, _ = listener.accept()
        lines = []
        while not (line := readline(client)).startswith("CONNECTED"):
            lines.append(line)
        accepted.close()
        client.communicate(timeout=15)
    report = "".join(lines)
    assert "applied      TCP_KEEPIDLE=1 s" in report
    assert "applied      TCP_KEEPCNT=3 probes" in report
    assert "applied      TCP_USER_TIMEOUT=5000 ms" in report
    assert "idle dead peer: dropped after at most" in report


# --------------------------------------------------------------------------------------
# JSON logging through structlog
# --------------------------------------------------------------------------------------


def test_json_logging_prints_one_json_object_per_event() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "json_logging.py")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    server = [event for event in events if event["side"] == "server"]
    names = [event["event"] for event in server]
    assert names[:2] == ["server.listening", "peer.connected"]
    assert "peer.suspect" in names
    dead = next(event for event in server if event["event"] == "peer.dead")
    assert (dead["reason"], dead["source"], dead["level"]) == ("timeout", "heartbeat", "warning")
    assert dead["silence"] == pytest.approx(0.5, abs=0.2)
    assert all("timestamp" in event for event in events)
    assert any(event["side"] == "client" and event["event"] == "peer.dead" for event in events)


# --------------------------------------------------------------------------------------
# TLS echo
# --------------------------------------------------------------------------------------


def _tls_echo(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "tls_echo.py"), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("mutual", [False, True], ids=["server-auth", "mutual"])
def test_tls_echo_runs_heartbeats_inside_tls(mutual: bool) -> None:
    lines = _tls_echo(*(["--mutual"] if mutual else []))
    assert lines[0].startswith("server: listening on 127.0.0.1:")
    client_certificate = "echo-client@example.org" if mutual else "none"
    assert f"server: client certificate: {client_certificate}" in lines
    assert "client: TLSv1.3, server certificate for localhost, 127.0.0.1" in lines
    assert [line for line in lines if line.startswith("echo:")] == [
        "echo: hello 0",
        "echo: hello 1",
        "echo: hello 2",
    ]
    (heartbeats,) = [line for line in lines if "pings" in line]
    pings = int(heartbeats.split()[1])
    assert pings >= 1
    assert heartbeats.endswith("inside TLS, state alive")
    assert lines[-1] == "client: closed (local_close, clean: True)"


def test_tls_echo_takes_certificates_from_files(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    client = ca.issue_cert("files-client@example.org")
    client.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    lines = _tls_echo(
        "--ca",
        str(tmp_path / "ca.pem"),
        "--server-cert",
        str(tmp_path / "server.pem"),
        "--client-cert",
        str(tmp_path / "client.pem"),
    )
    assert "server: client certificate: files-client@example.org" in lines
    assert lines[-1] == "client: closed (local_close, clean: True)"


# --------------------------------------------------------------------------------------
# Unix socket pair
# --------------------------------------------------------------------------------------


def test_unix_pair_echoes_pings_and_removes_its_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "pulse.sock"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "unix_pair.py"), "--path", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"server: listening on {path}"
    assert lines[1:4] == ["echo: hello 0", "echo: hello 1", "echo: hello 2"]
    assert lines[4].startswith("client: ping answered in ")
    assert float(lines[4].split()[4]) < 1000  # a round trip, in ms
    assert lines[4].endswith("kernel options: None")  # nothing set on a Unix socket
    assert lines[5:] == [
        "client: closed (local_close, clean: True)",
        "server: socket file removed: True",
    ]
    assert not path.exists()


# --------------------------------------------------------------------------------------
# bring your own protocol: newline-delimited JSON with pulsewire.Heartbeat
# --------------------------------------------------------------------------------------


def test_ndjson_heartbeat_convicts_a_frozen_peer_of_timeout(start: Started) -> None:
    timeout = 1.0
    server, line = start("ndjson_heartbeat.py", "server")
    client, _ = start(
        "ndjson_heartbeat.py", "client", str(ready_port(line)), "--timeout", str(timeout),
        ready="READY",
    )  # fmt: skip
    read_until(client, "PONG")  # the heartbeat runs over the application's own messages
    os.kill(server.pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    dead = read_until(client, "DEAD").split()
    detected = time.monotonic() - frozen_at
    assert dead[1] == "timeout"
    silence = float(dead[2].removeprefix("silence="))
    # Convicted after the policy's timeout of silence, not sooner; and at most that long
    # after the freeze plus an honest margin for a loaded machine (reading the line too).
    assert timeout - 0.01 <= silence <= timeout + 0.3
    assert detected <= timeout + 0.5


# --------------------------------------------------------------------------------------
# a pulsewire.anyio server on trio, asyncio clients
# --------------------------------------------------------------------------------------


async def _visit_trio_server(port: int) -> None:
    policy = pulsewire.Policy(interval=0.2, timeout=1.0)
    polite = await pulsewire.connect("127.0.0.1", port, policy=policy, name="polite")
    await polite.send(b"hello trio")
    async with asyncio.timeout(10):
        assert await polite.recv() == b"hello trio"
    await polite.close()
    # A client that vanishes without a word: its kernel resets the connection.
    silent = await pulsewire.connect("127.0.0.1", port, policy=policy, name="silent")
    silent.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
    )
    silent.abort()


def test_trio_server_echoes_and_reports_each_death(start: Started) -> None:
    server, line = start("trio_server.py", "0")
    asyncio.run(_visit_trio_server(ready_port(line)))
    lines = [readline(server).strip() for _ in range(4)]
    assert lines == [
        "polite joined",
        "polite is gone: eof (peer)",
        "silent joined",
        "silent is gone: reset (kernel)",
    ]
