"""A client that embeds pulsewire: ``pulsewire.Client`` reconnects, and every death is logged.

Run:  python examples/echo_server.py 8765      (in one terminal)
      python examples/reconnecting_client.py 8765
Then stop the server (Ctrl-C: ``eof``), freeze it (Ctrl-Z: ``timeout`` after 1 s), or
start it again: the client says why each connection died and carries on when the server
is back, with exponential backoff and jitter between attempts.

Arguments: PORT [MESSAGES]: stop after MESSAGES echoes in all (default: run forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

import pulsewire


async def main(port: int, messages: int | None) -> None:
    policy = pulsewire.Policy(interval=0.25, timeout=1.0)
    backoff = pulsewire.Backoff(initial=0.1, maximum=2.0)
    client = pulsewire.Client(
        "127.0.0.1", port, policy=policy, backoff=backoff, name="reconnecting-client"
    )
    sent = 0
    async with client:
        async for connection in client:  # each new live connection, after each death
            print(f"connected (connection #{client.stats().connects})", flush=True)
            try:
                while messages is None or sent < messages:
                    await connection.send(f"message {sent}".encode())
                    reply = await connection.recv()
                    print(f"echo: {reply.decode()}  rtt {connection.rtt}", flush=True)
                    sent += 1
                    await asyncio.sleep(0.1)
            except pulsewire.ConnectionClosedError as error:
                # Every death carries its reason, who established it, and the silence.
                death = error.death
                print(
                    f"connection died: {death.reason.value} ({death.source.value}), "
                    f"silent for {death.silence:.2f} s; reconnecting",
                    flush=True,
                )
                continue
            break
    stats = client.stats()
    print(f"done: {stats.connects} connection(s), deaths by reason {stats.deaths}", flush=True)


if __name__ == "__main__":
    # pulsewire logs through `logging` (client.disconnected, client.connect_failed, ...);
    # the application decides where its events go: stderr here, our own lines on stdout.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None))
