"""A chat server: a ``pulsewire.Server`` subclass that relays every line to everyone else.

Run:  python examples/chat_server.py [PORT]
Then connect clients that send UTF-8 lines (``python examples/reconnecting_client.py PORT``
is one). When a member's connection dies the others are told why: ``left (eof)`` for a
client that exited or was killed, ``left (reset)`` for one that aborted, ``vanished
(timeout)`` for one that froze or lost its network, after the policy's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

import pulsewire


class ChatServer(pulsewire.Server):
    """Hooks only: pulsewire runs them one at a time per connection, in event order."""

    def __init__(self) -> None:
        self.members: dict[pulsewire.Connection, str] = {}

    async def broadcast(self, text: str, *, sender: pulsewire.Connection | None = None) -> None:
        print(text, flush=True)
        for member in list(self.members):
            if member is not sender and member.death is None:
                with contextlib.suppress(pulsewire.ConnectionClosedError):
                    await member.send(text.encode())

    async def on_connect(self, connection: pulsewire.Connection) -> None:
        name = connection.peer_name or connection.peer_address
        self.members[connection] = name
        await self.broadcast(f"* {name} joined")

    async def on_message(self, connection: pulsewire.Connection, message: bytes) -> None:
        name = self.members.get(connection, "?")
        await self.broadcast(f"{name}: {message.decode(errors='replace')}", sender=connection)

    async def on_suspect(self, connection: pulsewire.Connection) -> None:
        print(f"  ({self.members.get(connection)} is silent: suspect)", flush=True)

    async def on_dead(self, connection: pulsewire.Connection, death: pulsewire.Death) -> None:
        name = self.members.pop(connection, "?")
        how = "vanished" if death.reason is pulsewire.Reason.TIMEOUT else "left"
        await self.broadcast(f"* {name} {how} ({death.reason.value})")


async def main(port: int) -> None:
    # Dead after 2 s of silence: a frozen member is dropped within 2 s.
    policy = pulsewire.Policy(interval=0.5, timeout=2.0)
    listener = await pulsewire.serve(ChatServer(), "127.0.0.1", port, policy=policy, name="chat")
    print(f"READY {listener.port}", flush=True)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    # pulsewire logs through `logging` (logger "pulsewire"); the application decides where
    # its events go: here every event from INFO up, on stderr.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8765))
