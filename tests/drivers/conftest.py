"""Fixtures for the asyncio driver tests: real sockets on 127.0.0.1, real peer processes.

Peers are ``peer.py`` subprocesses, run by :mod:`peers` (shared with the conformance
suite): they announce themselves with a ``READY ...`` line, are signalled by PID only, and
are always cleaned up (SIGCONT, then SIGKILL) by the fixture, even when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

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


class Script:
    """A running ``attackers.py`` or ``target.py``: its JSON lines on stdout, its stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    async def read_line(self, within: float = 30.0) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            raw = await self.process.stdout.readline()
        if not raw:
            raise EOFError(f"the script ended (exit {self.process.returncode})")
        return raw.decode()

    async def read_until(self, key: str, count: int = 1, within: float = 60.0) -> None:
        """Read JSON lines until ``count`` of them have ``key``."""
        async with asyncio.timeout(within):
            while sum(key in line for line in self.lines) < count:
                self.lines.append(json.loads(await self.read_line(within)))

    def where(self, key: str) -> list[dict[str, Any]]:
        """The lines read so far that have ``key``."""
        return [line for line in self.lines if key in line]

    async def ask(self, command: str, within: float = 30.0) -> dict[str, Any]:
        """Write ``command`` on its stdin; return the JSON line it answers with."""
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        answer: dict[str, Any] = json.loads(await self.read_line(within))
        return answer


StartScript = Callable[..., Awaitable[Script]]


@pytest_asyncio.fixture
async def start_script() -> AsyncIterator[StartScript]:
    """``await start_script("attackers.py", "flood", ...)``: a script of this directory as a
    subprocess (``stderr``: where its stderr goes, default inherited); killed by its PID at
    the end of the test, whatever happens."""
    started: list[asyncio.subprocess.Process] = []

    async def start(name: str, *args: str, stderr: Any = None) -> Script:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).with_name(name)),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        started.append(process)
        return Script(process)

    try:
        yield start
    finally:
        for process in started:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await process.wait()
            if process.stdin is not None:
                process.stdin.close()
