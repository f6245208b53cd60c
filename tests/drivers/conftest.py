"""Fixtures for the asyncio driver tests: real sockets on 127.0.0.1, real peer processes.

Peers are ``peer.py`` subprocesses. They announce themselves with a ``READY ...`` line on
stdout, which the tests read instead of sleeping; they are signalled by PID only, and
always cleaned up (SIGCONT, then SIGKILL) by the fixture, even when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

import pulsewire

PEER_SCRIPT = Path(__file__).with_name("peer.py")

#: Starting a Python process that imports pulsewire takes ~0.3 s; a loaded CI box, more.
STARTUP_TIMEOUT = 15.0


class Peer:
    """A running ``peer.py``: read its lines, write to its stdin, signal it by PID."""

    def __init__(self, process: asyncio.subprocess.Process, args: tuple[str, ...]) -> None:
        self.process = process
        self.args = args
        self.ready: list[str] = []  #: the fields of its READY line, after "READY"

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: signal.Signals) -> None:
        if self.process.returncode is None:  # not reaped yet, so the PID is still its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def freeze(self) -> None:
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    async def readline(self, within: float = 10.0) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            line = await self.process.stdout.readline()
        if not line:
            raise EOFError(f"peer {self.args} ended its output (exit {self.process.returncode})")
        return line.decode().strip()

    async def expect(self, word: str, within: float = 10.0) -> list[str]:
        """Read lines until one starts with ``word``; return its other fields."""
        async with asyncio.timeout(within):
            while True:
                fields = (await self.readline(within)).split()
                if fields and fields[0] == word:
                    return fields[1:]

    async def write_line(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()

    async def wait(self, within: float = 10.0) -> int:
        async with asyncio.timeout(within):
            return await self.process.wait()

    async def cleanup(self) -> None:
        self.thaw()  # continue it first, so that nothing is ever left stopped
        self.kill()
        with contextlib.suppress(TimeoutError):
            await self.wait(10.0)
        if self.process.stdin is not None:
            self.process.stdin.close()


SpawnPeer = Callable[..., Awaitable[Peer]]


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
    peers: list[Peer] = []

    async def spawn(mode: str, *flags: str) -> Peer:
        args = (mode, *flags)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PEER_SCRIPT),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        peer = Peer(process, args)
        peers.append(peer)
        peer.ready = await peer.expect("READY", STARTUP_TIMEOUT)
        return peer

    try:
        yield spawn
    finally:
        for peer in peers:
            await peer.cleanup()
