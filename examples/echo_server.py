"""An echo server: every message comes back to its sender.

Run:  python examples/echo_server.py [PORT]
Then: python examples/echo_client.py PORT
Freeze the client (Ctrl-Z in its terminal) and watch the server log ``peer.suspect`` and
then ``peer.dead reason=timeout`` within the policy's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

import pulsewire


class EchoServer(pulsewire.Server):
    async def on_message(self, connection: pulsewire.Connection, message: bytes) -> None:
        await connection.send(message)

    async def on_dead(self, connection: pulsewire.Connection, death: pulsewire.Death) -> None:
        print(f"{connection.peer_address} is gone: {death.describe()}", flush=True)


async def main(port: int) -> None:
    policy = pulsewire.Policy(interval=0.5, timeout=2.0)
    listener = await pulsewire.serve(EchoServer(), "127.0.0.1", port, policy=policy, name="echo")
    print(f"READY {listener.port}", flush=True)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    # pulsewire logs through `logging` (logger "pulsewire"); the application decides where
    # its events go: here every event from INFO up, on stderr.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8765))
