"""Peer processes for the driver tests and the conformance suite, on any anyio backend.

A peer is a ``tests/drivers/peer.py`` subprocess. It announces itself with a
``READY ...`` line on stdout, which the tests read instead of sleeping; it is signalled
by PID only, and always cleaned up (SIGCONT, then SIGKILL) by whoever spawned it, even
when a test fails. Everything here is anyio, so it runs on asyncio, uvloop and trio.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

PEER_SCRIPT = Path(__file__).parent / "drivers" / "peer.py"

#: Starting a Python process that imports pulsewire takes ~0.3 s; a loaded CI box, more.
STARTUP_TIMEOUT = 15.0


class Peer:
    """A running ``peer.py``: read its lines, write to its stdin, signal it by PID."""

    def __init__(self, process: Process, args: tuple[str, ...]) -> None:
        self.process = process
        self.args = args
        self.ready: list[str] = []  #: the fields of its READY line, after "READY"
        assert process.stdout is not None
        self._stdout = BufferedByteReceiveStream(process.stdout)

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
        try:
            with anyio.fail_after(within):
                line = await self._stdout.receive_until(b"\n", 65536)
        except anyio.IncompleteRead:
            raise EOFError(
                f"peer {self.args} ended its output (exit {self.process.returncode})"
            ) from None
        return line.decode().strip()

    async def expect(self, word: str, within: float = 10.0) -> list[str]:
        """Read lines until one starts with ``word``; return its other fields."""
        with anyio.fail_after(within):
            while True:
                fields = (await self.readline(within)).split()
                if fields and fields[0] == word:
                    return fields[1:]

    async def write_line(self, text: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(text.encode() + b"\n")

    async def wait(self, within: float = 10.0) -> int:
        with anyio.fail_after(within):
            return await self.process.wait()

    async def cleanup(self) -> None:
        with anyio.CancelScope(shield=True):
            self.thaw()  # continue it first, so that nothing is ever left stopped
            self.kill()
            with contextlib.suppress(TimeoutError):
                await self.wait(10.0)
            await self.process.aclose()


SpawnPeer = Callable[..., Awaitable[Peer]]


@contextlib.asynccontextmanager
async def peer_spawner() -> AsyncIterator[SpawnPeer]:
    """``spawn = ...; await spawn("server", "--interval", "0.2")`` starts a peer, waits for
    its READY line (or the word given as ``ready``); every peer started is killed when the
    block ends."""
    peers: list[Peer] = []

    async def spawn(mode: str, *flags: str, ready: str = "READY") -> Peer:
        args = (mode, *flags)
        process = await anyio.open_process([sys.executable, str(PEER_SCRIPT), *args], stderr=None)
        peer = Peer(process, args)
        peers.append(peer)
        peer.ready = await peer.expect(ready, STARTUP_TIMEOUT)
        return peer

    try:
        yield spawn
    finally:
        for peer in peers:
            await peer.cleanup()
