"""The policy's kernel options reach the real socket (Linux: read back with getsockopt)."""

from __future__ import annotations

import socket
import sys

import pytest

import pulsewire
from pulsewire.core.keepalive import KernelKeepalive

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads Linux socket options")


def _tcp(connection: pulsewire.Connection, option: int, level: int = socket.IPPROTO_TCP) -> int:
    value: int = connection.get_extra_info("socket").getsockopt(level, option)
    return value


@pytest.mark.asyncio
async def test_the_default_policy_bounds_unacknowledged_writes_by_its_timeout() -> None:
    async def handler(connection: pulsewire.Connection) -> None:
        await connection.wait_dead()

    async with await pulsewire.serve(handler) as listener:
        connection = await pulsewire.connect("127.0.0.1", listener.port)
        assert _tcp(connection, socket.TCP_USER_TIMEOUT) == 5000
        assert _tcp(connection, socket.SO_KEEPALIVE, socket.SOL_SOCKET) == 0
        assert connection.kernel_report is not None
        assert connection.kernel_report.unacked_detection_time == 5.0
        await connection.close()


@pytest.mark.asyncio
async def test_tcp_user_timeout_can_be_turned_off() -> None:
    async def handler(connection: pulsewire.Connection) -> None:
        await connection.wait_dead()

    async with await pulsewire.serve(handler) as listener:
        policy = pulsewire.Policy(tcp_user_timeout=False)
        connection = await pulsewire.connect("127.0.0.1", listener.port, policy=policy)
        assert _tcp(connection, socket.TCP_USER_TIMEOUT) == 0
        assert connection.kernel_report is None
        await connection.close()


@pytest.mark.asyncio
async def test_kernel_keepalive_probing_is_applied_alongside_the_user_timeout() -> None:
    async def handler(connection: pulsewire.Connection) -> None:
        await connection.wait_dead()

    kernel = KernelKeepalive(idle=2, interval=1, count=3)
    async with await pulsewire.serve(handler) as listener:
        policy = pulsewire.Policy(timeout=4.0, kernel=kernel)
        connection = await pulsewire.connect("127.0.0.1", listener.port, policy=policy)
        assert _tcp(connection, socket.SO_KEEPALIVE, socket.SOL_SOCKET) == 1
        assert _tcp(connection, socket.TCP_KEEPIDLE) == 2
        assert _tcp(connection, socket.TCP_KEEPINTVL) == 1
        assert _tcp(connection, socket.TCP_KEEPCNT) == 3
        assert _tcp(connection, socket.TCP_USER_TIMEOUT) == 4000
        await connection.close()
