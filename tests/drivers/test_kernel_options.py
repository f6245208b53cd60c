"""The policy's kernel options reach the real socket (Linux: read back with getsockopt)."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

import pulsewire
from pulsewire.core.keepalive import KernelKeepalive
from pulsewire.kernel import LINUX_TCP_THIN_LINEAR_TIMEOUTS

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads Linux socket options")


def _tcp(connection: pulsewire.Connection, option: int, level: int = socket.IPPROTO_TCP) -> int:
    value: int = connection.get_extra_info("socket").getsockopt(level, option)
    return value


def _congestion(sock: socket.socket) -> str:
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
    return raw.split(b"\0", 1)[0].decode()


def _host_congestion() -> str:
    """The congestion control this host gives a new socket (read from one, not the sysctl)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return _congestion(sock)


@pytest.mark.asyncio
async def test_the_default_policy_bounds_unacknowledged_writes_by_its_timeout() -> None:
    accepted: list[pulsewire.Connection] = []

    async def handler(connection: pulsewire.Connection) -> None:
        accepted.append(connection)
        await connection.wait_dead()

    policy = pulsewire.Policy()
    timeout_ms = round(policy.timeout * 1000)
    async with await pulsewire.serve(handler) as listener:
        connection = await pulsewire.connect("127.0.0.1", listener.port)
        assert _tcp(connection, socket.TCP_USER_TIMEOUT) == timeout_ms
        assert _tcp(connection, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 1
        assert _tcp(connection, socket.SO_KEEPALIVE, socket.SOL_SOCKET) == 0
        report = connection.kernel_report
        assert report is not None
        assert report.unacked_detection_time == policy.timeout
        switched = [("TCP_CONGESTION", "reno")] if _host_congestion() == "bbr" else []
        assert [(o.option, o.read_back) for o in report.applied] == [
            ("TCP_USER_TIMEOUT", timeout_ms),
            ("TCP_THIN_LINEAR_TIMEOUTS", 1),
            *switched,
        ]
        assert "applied      TCP_THIN_LINEAR_TIMEOUTS=on" in report.describe()
        # The server side's sockets get the same options.
        await asyncio.sleep(0)
        (served,) = accepted
        assert _tcp(served, socket.TCP_USER_TIMEOUT) == timeout_ms
        assert _tcp(served, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 1
        await connection.close()


@pytest.mark.asyncio
async def test_tcp_user_timeout_can_be_turned_off() -> None:
    async def handler(connection: pulsewire.Connection) -> None:
        await connection.wait_dead()

    async with await pulsewire.serve(handler) as listener:
        policy = pulsewire.Policy(tcp_user_timeout=False)
        connection = await pulsewire.connect("127.0.0.1", listener.port, policy=policy)
        assert _tcp(connection, socket.TCP_USER_TIMEOUT) == 0
        assert _tcp(connection, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 1
        assert connection.kernel_report is not None
        assert connection.kernel_report.unacked_detection_time is None
        await connection.close()


@pytest.mark.asyncio
async def test_linear_timeouts_can_be_turned_off() -> None:
    async def handler(connection: pulsewire.Connection) -> None:
        await connection.wait_dead()

    async with await pulsewire.serve(handler) as listener:
        policy = pulsewire.Policy(tcp_thin_linear_timeouts=False)
        connection = await pulsewire.connect("127.0.0.1", listener.port, policy=policy)
        assert _tcp(connection, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 0
        assert _tcp(connection, socket.TCP_USER_TIMEOUT) == round(policy.timeout * 1000)
        off = pulsewire.Policy(tcp_user_timeout=False, tcp_thin_linear_timeouts=False)
        bare = await pulsewire.connect("127.0.0.1", listener.port, policy=off)
        assert _tcp(bare, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 0
        assert _tcp(bare, socket.TCP_USER_TIMEOUT) == 0
        assert bare.kernel_report is None
        await connection.close()
        await bare.close()


@pytest.mark.asyncio
async def test_kernel_keepalive_probing_is_applied_alongside_the_user_timeout() -> None:
    async def handler(connection: pulsewire.Connection) -> None:
        await connection.wait_dead()

    kernel = KernelKeepalive(idle=2, interval=1, count=3)
    async with await pulsewire.serve(handler) as listener:
        policy = pulsewire.Policy(timeout=6.0, kernel=kernel)
        connection = await pulsewire.connect("127.0.0.1", listener.port, policy=policy)
        assert _tcp(connection, socket.SO_KEEPALIVE, socket.SOL_SOCKET) == 1
        assert _tcp(connection, socket.TCP_KEEPIDLE) == 2
        assert _tcp(connection, socket.TCP_KEEPINTVL) == 1
        assert _tcp(connection, socket.TCP_KEEPCNT) == 3
        assert _tcp(connection, socket.TCP_USER_TIMEOUT) == 6000
        assert _tcp(connection, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 1
        await connection.close()


@pytest.mark.asyncio
async def test_kernel_probing_keeps_its_probe_count_under_the_user_timeout() -> None:
    async def handler(connection: pulsewire.Connection) -> None:
        await connection.wait_dead()

    # Linux replaces TCP_KEEPCNT by TCP_USER_TIMEOUT: the policy's 3 s would drop an idle
    # connection after 1 unanswered probe (at 2 + 1 s), so the user timeout is raised to
    # the probing's own bound, 2 + 1 * 3 = 5 s, and all three probes are sent.
    kernel = KernelKeepalive(idle=2, interval=1, count=3)
    async with await pulsewire.serve(handler) as listener:
        policy = pulsewire.Policy(timeout=3.0, kernel=kernel)
        connection = await pulsewire.connect("127.0.0.1", listener.port, policy=policy)
        assert _tcp(connection, socket.TCP_USER_TIMEOUT) == 5000
        report = connection.kernel_report
        assert report is not None
        assert report.idle_detection_time == 5
        assert not any("false death" in note for note in report.notes)
        await connection.close()


@pytest.mark.asyncio
async def test_both_ends_of_a_bbr_host_switch_to_reno_unless_told_not_to() -> None:
    if _host_congestion() != "bbr":
        pytest.skip(f"new sockets here use {_host_congestion()!r}: there is nothing to switch")
    accepted: list[pulsewire.Connection] = []

    async def handler(connection: pulsewire.Connection) -> None:
        accepted.append(connection)
        await connection.wait_dead()

    async with await pulsewire.serve(handler) as listener:
        connection = await pulsewire.connect("127.0.0.1", listener.port)
        await asyncio.sleep(0)
        (served,) = accepted
        for end in (connection, served):
            assert _congestion(end.get_extra_info("socket")) == "reno"
            assert _tcp(end, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 1
        kept = pulsewire.Policy(thin_stream_congestion=None)
        bbr = await pulsewire.connect("127.0.0.1", listener.port, policy=kept)
        assert _congestion(bbr.get_extra_info("socket")) == "bbr"
        assert _tcp(bbr, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 1
        assert bbr.kernel_report is not None
        assert any(
            "has no effect under congestion control 'bbr'" in n for n in bbr.kernel_report.notes
        )
        # Without linear timeouts there is nothing to switch for.
        plain = pulsewire.Policy(tcp_thin_linear_timeouts=False)
        unswitched = await pulsewire.connect("127.0.0.1", listener.port, policy=plain)
        assert _congestion(unswitched.get_extra_info("socket")) == "bbr"
        for each in (connection, bbr, unswitched):
            await each.close()
