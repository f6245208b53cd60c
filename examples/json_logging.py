"""JSON logs: every pulsewire event as one JSON object per line, in three lines of setup.

Run:  python examples/json_logging.py

pulsewire hands its events to the standard ``logging`` logger ``pulsewire``, with stable
event names (``peer.connected``, ``peer.suspect``, ``peer.dead``, ... listed in
``pulsewire.logevents``) and the event's fields as structured data. It configures nothing:
the application does, here with structlog's ``ProcessorFormatter`` for JSON lines on
stdout, ready for a log shipper. The example serves, connects a client whose event loop
then hangs (it runs in a thread that blocks), and logs what happens: the server suspects
the client, convicts it (``"reason": "timeout"``), and the client, once it runs again,
finds its connection gone. ``merge_contextvars`` adds each side's ``side`` field.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading

import structlog

import pulsewire

POLICY = pulsewire.Policy(interval=0.1, timeout=0.5)

JSON_LINES = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
    structlog.processors.JSONRenderer(sort_keys=True),
]


def configure_json_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(processors=JSON_LINES))
    logging.basicConfig(handlers=[handler], level=logging.INFO)


class EchoServer(pulsewire.Server):
    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def on_message(self, connection: pulsewire.Connection, message: bytes) -> None:
        await connection.send(message)

    async def on_dead(self, connection: pulsewire.Connection, death: pulsewire.Death) -> None:
        self.gone.set()


def hanging_client(port: int, hang: threading.Event) -> None:
    """A client in its own thread and event loop, which hangs until ``hang`` is set."""

    async def run() -> None:
        structlog.contextvars.bind_contextvars(side="client")
        connection = await pulsewire.connect("127.0.0.1", port, policy=POLICY, name="client")
        await connection.send(b"hello")
        await connection.recv()
        hang.wait()  # blocks this loop: it answers nothing, like a hung process
        with contextlib.suppress(pulsewire.ConnectionClosedError):
            await connection.recv()

    asyncio.run(run())


async def main() -> None:
    structlog.contextvars.bind_contextvars(side="server")
    server = EchoServer()
    async with await pulsewire.serve(server, "127.0.0.1", 0, policy=POLICY, name="server") as lst:
        released = threading.Event()
        client = threading.Thread(target=hanging_client, args=(lst.port, released))
        client.start()
        await server.gone.wait()  # peer.suspect, then peer.dead reason=timeout
        released.set()
        await asyncio.to_thread(client.join)


if __name__ == "__main__":
    configure_json_logging()
    asyncio.run(main())
