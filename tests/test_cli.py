"""The command line, run as a user runs it: as subprocesses, on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

COMMAND = [sys.executable, "-m", "pulsewire"]


def run_cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=None if env is None else {**os.environ, **env},
    )


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*COMMAND, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[str, str]:
    """Send ``sig`` (after SIGCONT, in case it is stopped) and collect the output."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGCONT)
        os.kill(process.pid, sig)
    try:
        return process.communicate(timeout=15)
    finally:
        process.kill()


def assert_one_line_error(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert ": error: " in lines[0]


# --------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------


def test_demo_json_gives_every_fault_its_verdict_and_reason() -> None:
    result = run_cli("demo", "--quick", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert report["ok"] is True
    assert report["policy"] == "quick"
    assert report["kernel_keepalive"] == {
        "idle": 1,
        "interval": 1,
        "count": 1,
        "idle_detection_time": 2,
    }
    faults = {row["fault"]: row for row in report["faults"]}
    assert list(faults) == ["frozen", "killed", "reset", "stalled"]

    frozen = faults["frozen"]
    assert frozen["expected"] == ["timeout"]
    assert frozen["pulsewire"]["verdict"] == "timeout"
    assert frozen["pulsewire"]["source"] == "heartbeat"
    # Dead after 1.5 s of silence, which began up to one ping interval before the fault.
    assert frozen["pulsewire"]["silence"] == pytest.approx(1.5, abs=0.2)
    assert 0.9 <= frozen["pulsewire"]["after"] <= 2.0
    assert frozen["pulsewire"]["suspect_after"] < frozen["pulsewire"]["after"]
    # The frozen process's kernel answers the keepalive probes: the socket stays open.
    assert frozen["kernel"] == {"verdict": "still open", "after": None}

    # The killed process's kernel closes with FIN, or RST if a PING reached it unread.
    killed = faults["killed"]
    assert killed["expected"] == ["eof", "reset"]
    assert killed["pulsewire"]["verdict"] in ("eof", "reset")
    assert killed["pulsewire"]["source"] == "kernel"
    assert killed["pulsewire"]["after"] < 0.5
    assert killed["kernel"]["verdict"] in ("eof", "reset")

    reset = faults["reset"]
    assert (reset["pulsewire"]["verdict"], reset["pulsewire"]["source"]) == ("reset", "kernel")
    assert reset["pulsewire"]["after"] < 0.5
    assert reset["kernel"]["verdict"] == "reset"

    # A 1.2 s stall against suspect-after 0.9 s and timeout 1.5 s: SUSPECT, then ALIVE.
    stalled = faults["stalled"]
    assert report["stall"] == pytest.approx(1.2)
    assert stalled["pulsewire"]["verdict"] == "alive"
    assert stalled["pulsewire"]["source"] is None
    assert stalled["pulsewire"]["suspect_after"] == pytest.approx(0.9, abs=0.25)
    assert stalled["pulsewire"]["recovered_after"] == pytest.approx(1.2, abs=0.25)
    assert stalled["kernel"]["verdict"] == "still open"
    assert all(row["ok"] for row in report["faults"])


def test_demo_prints_plain_lines_and_an_80_column_table_when_stdout_is_a_pipe() -> None:
    result = run_cli("demo", "--quick", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "\x1b[" not in out  # no terminal control sequences in a pipe
    assert "faults injected" in out
    assert re.search(r"frozen \(SIGSTOP\)\s+pulsewire: DEAD \(timeout: no answer\)", out)
    assert re.search(r"loop blocked 1\.2 s\s+pulsewire: SUSPECT", out)
    assert re.search(r"loop blocked 1\.2 s\s+pulsewire: ALIVE again", out)
    table = out[out.index("What noticed each fault") :]
    assert max(len(line) for line in table.splitlines()) <= 80
    assert re.search(r"frozen \(SIGSTOP\)\s+dead after \d\.\d\d s\s+still open:", table)
    assert re.search(r"killed \(SIGKILL\)\s+dead after \d\.\d\d s\s+dead after \d\.\d\d s", table)
    assert "pulsewire gave every fault its expected verdict." in out


def _without_rich(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line run as where the ``cli`` extra (rich) is not installed."""
    code = (
        "import sys; sys.modules['rich'] = None; "  # `import rich` now fails
        f"from pulsewire.cli import main; sys.exit(main({list(args)!r}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_without_rich_the_demo_says_how_to_install_it_and_the_rest_works() -> None:
    result = _without_rich("demo", "--quick")
    assert result.returncode == 1
    assert_one_line_error(result)
    assert "pip install 'pulsewire[cli]'" in result.stderr
    assert result.stdout == ""
    # The library and the other commands need no rich (structlog uses it only if present),
    # nor does the demo's --json, as the error says.
    assert _without_rich("kernel", "--json").returncode == 0
    json_only = _without_rich("demo", "--quick", "--json")
    assert json_only.returncode == 0, json_only.stderr
    assert json.loads(json_only.stdout)["ok"] is True


def _netns_unavailable() -> str | None:
    from pulsewire.cli.netns import netns_available

    return netns_available()


def test_demo_netns_adds_a_blackholed_peer_and_a_rebooted_host() -> None:
    reason = _netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    result = run_cli("demo", "--quick", "--json", "--netns")
    assert result.returncode == 0, result.stderr
    faults = {row["fault"]: row for row in json.loads(result.stdout)["faults"]}
    assert list(faults) == ["frozen", "killed", "reset", "stalled", "blackholed", "rebooted"]
    blackholed = faults["blackholed"]
    assert blackholed["pulsewire"]["verdict"] == "timeout"
    assert blackholed["pulsewire"]["silence"] == pytest.approx(1.5, abs=0.2)
    # Nothing answers the probes either: tight kernel keepalive gives up within ~2 s.
    assert blackholed["kernel"]["verdict"] == "timeout"
    assert blackholed["kernel"]["after"] <= 2.5
    rebooted = faults["rebooted"]
    assert (rebooted["pulsewire"]["verdict"], rebooted["pulsewire"]["source"]) == (
        "reset",
        "kernel",
    )
    assert rebooted["pulsewire"]["after"] <= 1.0  # the next PING meets a RST
    assert rebooted["kernel"]["verdict"] == "reset"


# --------------------------------------------------------------------------------------
# serve and probe
# --------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``pulsewire serve`` on a free port, with a fast policy."""
    process = start_cli("serve", "--port", "0", "--interval", "0.2", "--timeout", "1")
    assert process.stdout is not None
    first = process.stdout.readline()
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", first)
    if match is None:
        stop(process, signal.SIGKILL)
        pytest.fail(f"serve did not start: {first!r}")
    try:
        yield process, int(match.group(1))
    finally:
        if process.poll() is None:
            stop(process, signal.SIGKILL)


def test_verbose_logs_one_line_per_event_on_stderr() -> None:
    process = start_cli("serve", "--port", "0", "-v")
    assert process.stderr is not None
    first = process.stderr.readline()
    stop(process)
    # The shape the command line has always printed: time, [level], event, fields.
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d \[info\s*\] server\.listening\s+"
        r"addresses=\['127\.0\.0\.1:\d+'\] inbound_budget=\d+ max_connections=\d+ "
        r"name=pulsewire-serve\n",
        first,
    ), first


def test_probe_counts_answers_and_serve_reports_the_orderly_close(
    server: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = server
    result = run_cli("probe", "-c", "3", "-i", "0.1", "--timeout", "1", f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr
    pongs = [line for line in result.stdout.splitlines() if line.startswith("pong from")]
    assert [re.search(r"seq=(\d+)", line).group(1) for line in pongs] == ["1", "2", "3"]  # type: ignore[union-attr]
    assert all(re.search(r"rtt=\d+\.\d+ ms state=alive$", line) for line in pongs)
    assert f"--- 127.0.0.1:{port} pulsewire probe statistics ---" in result.stdout
    assert "3 answered, 0.0% unanswered" in result.stdout
    assert re.search(r"rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms", result.stdout)

    out, _ = stop(process)  # Ctrl-C: closes in order and prints a summary
    assert process.returncode == 0
    assert re.search(r"connected\s+name='pulsewire-probe'", out)
    assert re.search(r"dead\s+eof \(peer\).*close code 1000", out)
    assert "pulsewire serve: stopped; 1 connection(s) served; ended by eof 1" in out


def test_probe_reports_a_frozen_server_dead_and_exits_1(
    server: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = server
    probe = start_cli("probe", "-i", "0.1", "--timeout", "0.8", f"127.0.0.1:{port}")
    assert probe.stdout is not None
    try:
        for line in probe.stdout:
            if line.startswith("pong from"):
                break
        os.kill(process.pid, signal.SIGSTOP)
        out, err = probe.communicate(timeout=15)
    finally:
        probe.kill()
        os.kill(process.pid, signal.SIGCONT)
    assert probe.returncode == 1, err
    assert f"127.0.0.1:{port} is SUSPECT: no answer for" in out
    assert re.search(r"is DEAD: timeout \(heartbeat\) after 0\.8\d\d s of silence", out)
    assert "unanswered" in out


def test_probe_prints_its_summary_on_ctrl_c(server: tuple[subprocess.Popen[str], int]) -> None:
    _, port = server
    probe = start_cli("probe", "-i", "0.1", "--timeout", "1", f"127.0.0.1:{port}")
    assert probe.stdout is not None
    pongs = 0
    for line in probe.stdout:
        pongs += line.startswith("pong from")
        if pongs == 2:
            break
    out, err = stop(probe, signal.SIGINT)
    assert probe.returncode == 0, err
    assert "pulsewire probe statistics" in out
    assert "rtt min/avg/max/mdev" in out
    assert "Traceback" not in err


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_probe_of_a_closed_port_fails_in_one_line() -> None:
    result = run_cli("probe", f"127.0.0.1:{_closed_port()}")
    assert result.returncode == 1
    assert_one_line_error(result)
    assert "could not connect to 127.0.0.1:" in result.stderr


def test_probe_of_something_else_than_pulsewire_fails_in_one_line() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_like_http() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            connection.recv(100)

    thread = threading.Thread(target=answer_like_http, daemon=True)
    thread.start()
    try:
        result = run_cli("probe", f"127.0.0.1:{port}")
    finally:
        listener.close()
        thread.join(5)
    assert result.returncode == 1
    assert_one_line_error(result)
    assert "handshake" in result.stderr


def test_serve_on_a_busy_port_fails_in_one_line(
    server: tuple[subprocess.Popen[str], int],
) -> None:
    _, port = server
    result = run_cli("serve", "--port", str(port))
    assert result.returncode == 1
    assert_one_line_error(result)
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


# --------------------------------------------------------------------------------------
# kernel
# --------------------------------------------------------------------------------------


def _fake_proc(root: Path, **values: int) -> Path:
    directory = root / "sys" / "net" / "ipv4"
    directory.mkdir(parents=True)
    for name, value in values.items():
        (directory / name).write_text(f"{value}\n")
    return root


def test_kernel_json_has_the_host_facts_worst_cases_and_policies(tmp_path: Path) -> None:
    proc = _fake_proc(
        tmp_path,
        tcp_keepalive_time=7200,
        tcp_keepalive_intvl=75,
        tcp_keepalive_probes=9,
        tcp_retries2=15,
        tcp_syn_retries=6,
    )
    result = run_cli("kernel", "--json", "--proc-root", str(proc), "--within", "3")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"host", "kernel", "tightest_keepalive", "linear_timeouts", "pulsewire"}
    assert report["host"]["keepalive_time"] == 7200
    assert report["host"]["missing"] == []
    kernel = report["kernel"]
    assert kernel["idle_keepalive_on"] == 7875
    assert kernel["idle_keepalive_off"] is None
    assert kernel["unacked_data"] == pytest.approx(924.6)
    assert kernel["connect"] == pytest.approx(127.0)
    assert kernel["frozen_peer_process"] is None
    if sys.platform == "linux":
        assert kernel["tightest_keepalive_idle"] == 2
        assert report["tightest_keepalive"]["requested"]["idle"] == 1
    expressions = [entry["expression"] for entry in report["pulsewire"]]
    assert expressions == [
        "Policy.for_detection(3)",
        "Policy()",
        "Policy.lan()",
        "Policy.wan()",
        "Policy.nat()",
        "Policy.mobile()",
    ]
    first = report["pulsewire"][0]
    assert first["timeout"] == 3
    assert first["interval"] == 1
    assert first["policy"]["timeout"] == 3
    wan = report["pulsewire"][3]
    assert (wan["min_timeout"], wan["timeout"]) == (3, 10)


def test_kernel_text_explains_the_worst_cases(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, tcp_keepalive_time=600, tcp_keepalive_intvl=10)
    result = run_cli("kernel", "--proc-root", str(proc))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"tcp_keepalive_time\s+600 s", out)
    assert re.search(r"tcp_keepalive_probes\s+unknown", out)
    assert re.search(r"idle connection, SO_KEEPALIVE off \(the default\)\s+never", out)
    assert re.search(r"idle connection, SO_KEEPALIVE on\s+unknown", out)
    assert "a frozen or deadlocked peer process" in out
    assert re.search(r"Policy\.for_detection\(2\)\s+2 s", out)
    assert re.search(r"Policy\.wan\(\)\s+3-10 s \(adaptive\)", out)


def test_kernel_reads_this_host() -> None:
    result = run_cli("kernel", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["host"]["proc_root"] == "/proc"


def _new_socket_congestion() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
        except (OSError, AttributeError):
            return None
    return raw.split(b"\0", 1)[0].decode()


@pytest.mark.skipif(sys.platform != "linux", reason="TCP_CONGESTION is Linux-only")
def test_kernel_says_whether_linear_timeouts_work_under_this_hosts_congestion_control() -> None:
    before = _new_socket_congestion()
    data = json.loads(run_cli("kernel", "--json").stdout)
    linear = data["linear_timeouts"]
    assert data["host"]["congestion_control"] == before  # same namespace as this process
    # The default socket options never switch congestion control.
    assert (linear["congestion_before"], linear["congestion"]) == (before, None)
    assert linear["congestion_after"] == before
    assert "TCP_CONGESTION" not in [o["option"] for o in linear["report"]["applied"]]
    text = run_cli("kernel").stdout
    assert re.search(
        rf"tcp_congestion_control\s+{before}\s+congestion control of new sockets", text
    )
    if before == "bbr":
        assert linear["in_effect"] is False
        assert "new sockets use bbr: Linux never counts such a stream as thin" in text
        assert 'SocketOptions(congestion="reno") switches its own sockets' in text
        assert "in effect for pulsewire's sockets: no" in text
    else:
        assert linear["in_effect"] is True
        assert "a heartbeat counts as a thin stream, they apply" in text
        assert "in effect for pulsewire's sockets: yes" in text


# --------------------------------------------------------------------------------------
# arguments and help
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("demo", "--interval", "2", "--timeout", "1"),
            "timeout (1.0 s) must be longer than interval (2.0 s)",
        ),
        (("demo", "--quick", "--policy", "lan"), "give either --quick or --policy"),
        (
            ("demo", "--interval", "0.001", "--timeout", "1"),
            "interval 0.001 s is below pulsewire's floor of 0.01 s",
        ),
        (("kernel", "--within", "0.01"), "timeout 0.01 s is below pulsewire's floor of 0.1 s"),
        (("demo", "--policy", "fast"), "invalid choice: 'fast'"),
        (("probe", "localhost"), "expected HOST:PORT, got 'localhost'"),
        (("probe", "localhost:http"), "port must be a number"),
        (("probe", "::1:80"), "write an IPv6 address in brackets"),
        (("probe", "-c", "0", "localhost:1"), "must be at least 1"),
        (("probe", "-i", "-1", "localhost:1"), "must be a positive number"),
        (("serve", "--port", "70000"), "port must be between 0 and 65535"),
        (("serve", "--timeout", "soon"), "not a number: 'soon'"),
        (("kernel", "--loss", "2"), "--loss must be a fraction in [0, 1)"),
        (("kernel", "--within", "0"), "must be a positive number"),
        (
            ("kernel", "--proc-root", "/nonexistent"),
            "--proc-root /nonexistent: there is no directory /nonexistent/sys/net/ipv4",
        ),
        (("launch",), "invalid choice: 'launch'"),
        ((), "the following arguments are required: COMMAND"),
    ],
)
def test_bad_arguments_exit_2_with_a_one_line_error(args: tuple[str, ...], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert_one_line_error(result)
    assert message in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["demo", "serve", "probe", "kernel"])
def test_help_explains_the_command_and_its_exit_codes(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "exit codes: 0 " in result.stdout
    assert "2 bad arguments" in result.stdout


def test_top_level_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("demo", "serve", "probe", "kernel"):
        assert f"    {command}" in result.stdout
    assert "exit codes:" in result.stdout
