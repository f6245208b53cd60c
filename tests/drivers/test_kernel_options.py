"""The socket options reach the real socket (Linux: read back with getsockopt)."""

from __future__ import annotations

import socket
import sys

import pytest

import pulsewire
from pulsewire import KernelKeepalive, SocketOptions
from pulsewire.kernel import LINUX_TCP_RTO_MAX_MS, LINUX_TCP_THIN_LINEAR_TIMEOUTS

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
async def test_the_defaults_cap_the_rto_and_leave_the_user_timeout_unset(accepting) -> None:
    async with await pulsewire.serve(accepting) as listener:
        connection = await pulsewire.connect("127.0.0.1", listener.port)
        assert _tcp(connection, socket.TCP_USER_TIMEOUT) == 0  # off: see SocketOptions
        assert _tcp(connection, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 1
        assert _tcp(connection, socket.SO_KEEPALIVE, socket.SOL_SOCKET) == 0
        report = connection.kernel_report
        assert report is not None
        if [o.option for o in report.unsupported] == ["TCP_RTO_MAX_MS"]:
            pytest.skip("this kernel has no TCP_RTO_MAX_MS (Linux 6.15 and later)")
        assert _tcp(connection, LINUX_TCP_RTO_MAX_MS) == 1000
        # Unacknowledged data is given up after tcp_retries2 retransmissions 1 s apart at most.
        assert report.unacked_detection_time == pytest.approx(14.4)
        # Congestion control is the user's: never switched by default, even on a BBR host.
        assert [(o.option, o.read_back) for o in report.applied] == [
            ("TCP_THIN_LINEAR_TIMEOUTS", 1),
            ("TCP_RTO_MAX_MS", 1000),
        ]
        assert _congestion(connection.get_extra_info("socket")) == _host_congestion()
        assert "applied      TCP_THIN_LINEAR_TIMEOUTS=on" in report.describe()
        # The server side's sockets get the same options.
        served = await accepting.next()
        assert _tcp(served, LINUX_TCP_RTO_MAX_MS) == 1000
        assert _tcp(served, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 1
        # Equal reports are one object: 10,000 connections do not keep 10,000 copies.
        assert served.kernel_report == report
        assert served.kernel_report is report
        await connection.close()


@pytest.mark.asyncio
async def test_each_socket_option_can_be_turned_on_and_off(accepting) -> None:
    async with await pulsewire.serve(accepting) as listener:
        derived = await pulsewire.connect(
            "127.0.0.1", listener.port, socket_options=SocketOptions(user_timeout=True)
        )
        assert _tcp(derived, socket.TCP_USER_TIMEOUT) == 3000  # the policy's timeout
        assert derived.kernel_report is not None
        assert derived.kernel_report.unacked_detection_time == 3.0
        no_linear = await pulsewire.connect(
            "127.0.0.1", listener.port, socket_options=SocketOptions(linear_timeouts=False)
        )
        assert _tcp(no_linear, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 0
        off = SocketOptions(linear_timeouts=False, rto_max=None)
        bare = await pulsewire.connect("127.0.0.1", listener.port, socket_options=off)
        assert _tcp(bare, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 0
        assert _tcp(bare, socket.TCP_USER_TIMEOUT) == 0
        assert bare.kernel_report is None
        for connection in (derived, no_linear, bare):
            await connection.close()


@pytest.mark.asyncio
async def test_kernel_keepalive_probing_is_applied_alongside_the_user_timeout(accepting) -> None:
    keepalive = KernelKeepalive(idle=2, interval=1, count=3)
    async with await pulsewire.serve(accepting) as listener:
        connection = await pulsewire.connect(
            "127.0.0.1",
            listener.port,
            policy=pulsewire.Policy(timeout=6.0),
            socket_options=SocketOptions(keepalive=keepalive, user_timeout=True),
        )
        assert _tcp(connection, socket.SO_KEEPALIVE, socket.SOL_SOCKET) == 1
        assert _tcp(connection, socket.TCP_KEEPIDLE) == 2
        assert _tcp(connection, socket.TCP_KEEPINTVL) == 1
        assert _tcp(connection, socket.TCP_KEEPCNT) == 3
        assert _tcp(connection, socket.TCP_USER_TIMEOUT) == 6000
        assert _tcp(connection, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 1
        await connection.close()


@pytest.mark.asyncio
async def test_kernel_probing_keeps_its_probe_count_under_the_user_timeout(accepting) -> None:
    # Linux replaces TCP_KEEPCNT by TCP_USER_TIMEOUT: the policy's 3 s would drop an idle
    # connection after 1 unanswered probe (at 2 + 1 s), so the user timeout is raised to
    # the probing's own bound, 2 + 1 * 3 = 5 s, and all three probes are sent.
    keepalive = KernelKeepalive(idle=2, interval=1, count=3)
    async with await pulsewire.serve(accepting) as listener:
        options = SocketOptions(keepalive=keepalive, user_timeout=True)
        connection = await pulsewire.connect("127.0.0.1", listener.port, socket_options=options)
        assert _tcp(connection, socket.TCP_USER_TIMEOUT) == 5000
        report = connection.kernel_report
        assert report is not None
        assert report.idle_detection_time == 5
        assert not any("false death" in note for note in report.notes)
        await connection.close()


@pytest.mark.asyncio
async def test_a_bbr_socket_is_switched_only_when_the_user_asks(accepting) -> None:
    if _host_congestion() != "bbr":
        pytest.skip(f"new sockets here use {_host_congestion()!r}: there is nothing to switch")
    reno = SocketOptions(congestion="reno")
    async with await pulsewire.serve(accepting, socket_options=reno) as listener:
        connection = await pulsewire.connect("127.0.0.1", listener.port, socket_options=reno)
        served = await accepting.next()
        for end in (connection, served):
            assert _congestion(end.get_extra_info("socket")) == "reno"
            assert _tcp(end, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 1
        kept = await pulsewire.connect("127.0.0.1", listener.port)
        assert _congestion(kept.get_extra_info("socket")) == "bbr"
        assert kept.kernel_report is not None
        assert any(
            "has no effect under congestion control 'bbr'" in n for n in kept.kernel_report.notes
        )
        # Without linear timeouts there is nothing to switch for.
        plain = SocketOptions(congestion="reno", linear_timeouts=False)
        unswitched = await pulsewire.connect("127.0.0.1", listener.port, socket_options=plain)
        assert _congestion(unswitched.get_extra_info("socket")) == "bbr"
        for each in (connection, kept, unswitched):
            await each.close()
