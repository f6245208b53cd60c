"""Fixtures for the asyncio driver tests: real sockets on 127.0.0.1, real peer processes.

Peers are ``peer.py`` subprocesses, run by :mod:`peers` (shared with the conformance
suite): they announce themselves with a ``READY ...`` line, are signalled by PID only, and
are always cleaned up (SIGCONT, then SIGKILL) by the fixture, even when a test fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import pulsewire
from peers import Peer, SpawnPeer, peer_spawner

__all__ = ["Accepting", "Peer", "SpawnPeer"]


class Accepting:
    """A plain handler function for ``serve()`` that hands each connection to the test.

    It holds the connection until it dies, so the server never closes it on its own.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[pulsewire.Connection] = asyncio.Queue()

    async def __call__(self, connection: pulsewire.Connection) -> None:
        self._queue.put_nowait(connection)
        await connection.wait_dead()

    async def next(self, within: float = 10.0) -> pulsewire.Connection:
        """The next connection whose handshake completed on the server side."""
        async with asyncio.timeout(within):
            return await self._queue.get()


@pytest.fixture
def accepting() -> Accepting:
    return Accepting()


@pytest_asyncio.fixture
async def spawn_peer() -> AsyncIterator[SpawnPeer]:
    """``await spawn_peer("server", "--interval", "0.2")`` starts a peer and waits for READY."""
    async with peer_spawner() as spawn:
        yield spawn
