"""A server written as a ``pulsewire.Server`` subclass, run until Ctrl-C or SIGTERM.

Run:  .venv/bin/python examples/greeting_server.py [PORT]
Then: .venv/bin/python examples/echo_client.py PORT   (or .venv/bin/pulsewire probe 127.0.0.1:PORT)
Stop it with Ctrl-C, or ``kill PID`` (SIGTERM, as systemd and docker send): it stops
accepting, closes every connection in order (close code 1001, GOING_AWAY, so clients
know it was not a crash), says how many connections it served, and exits with status 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog

import pulsewire


class GreetingServer(pulsewire.Server):
    """Each hook runs for one connection at a time, in the order of its events."""

    async def on_connect(self, connection: pulsewire.Connection) -> None:
        who = connection.peer_name or connection.peer_address
        print(f"{who} connected", flush=True)
        await connection.send(f"hello, {who}".encode())

    async def on_message(self, connection: pulsewire.Connection, message: bytes) -> None:
        await connection.send(message.upper())

    async def on_suspect(self, connection: pulsewire.Connection) -> None:
        print(f"{connection.peer_address} is silent: suspect", flush=True)

    async def on_recover(self, connection: pulsewire.Connection) -> None:
        print(f"{connection.peer_address} answers again", flush=True)

    async def on_dead(self, connection: pulsewire.Connection, death: pulsewire.Death) -> None:
        print(f"{connection.peer_address} is gone: {death.reason.value}", flush=True)


async def main(port: int) -> None:
    policy = pulsewire.Policy(interval=0.5, timeout=2.0)  # dead after 2 s of silence
    listener = await pulsewire.serve(GreetingServer(), "127.0.0.1", port, policy=policy)
    # SIGTERM stops the server as Ctrl-C does: by cancelling this task.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    async with listener:  # on the way out, even when cancelled: close in order
        print(f"READY {listener.port}", flush=True)
        try:
            await listener.serve_forever()  # until cancelled
        finally:
            print(f"stopping after {listener.stats().accepted} connection(s)", flush=True)


if __name__ == "__main__":
    # pulsewire logs through structlog; the application decides where logs go.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    try:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8765))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, SIGTERM
        print("stopped", flush=True)
