"""A pulsewire server on trio: echoes every message and says why each peer left.

Run:  .venv/bin/python examples/trio_server.py [PORT]
Then: .venv/bin/python examples/echo_client.py PORT   (an asyncio client: the wire is the same)

The server is ``pulsewire.anyio``'s, started in a trio nursery (``nursery.start`` hands
back the listener); cancelling the nursery closes every connection with GOING_AWAY.
Freeze a client (Ctrl-Z in its terminal) and the server prints, within the policy's
timeout, that it is gone with reason ``timeout (heartbeat)``.
"""

from __future__ import annotations

import contextlib
import functools
import sys

import structlog
import trio

import pulsewire
import pulsewire.anyio


class EchoServer(pulsewire.anyio.Server):
    async def on_connect(self, connection: pulsewire.anyio.Connection) -> None:
        print(f"{connection.peer_name or connection.peer_address} joined", flush=True)

    async def on_message(self, connection: pulsewire.anyio.Connection, message: bytes) -> None:
        await connection.send(message)

    async def on_dead(self, connection: pulsewire.anyio.Connection, death: pulsewire.Death) -> None:
        who = connection.peer_name or connection.peer_address
        print(f"{who} is gone: {death.reason.value} ({death.source.value})", flush=True)


async def main(port: int) -> None:
    policy = pulsewire.Policy(interval=0.2, timeout=1.0)
    serve = functools.partial(pulsewire.anyio.serve, policy=policy, name="trio-echo")
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(serve, EchoServer(), "127.0.0.1", port)
        print(f"READY {listener.port}", flush=True)


if __name__ == "__main__":
    # pulsewire logs through structlog; the application decides where logs go.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8765)
