"""Dead-peer detection for a protocol of your own: newline-delimited JSON over asyncio.

The protocol here is the application's, not pulsewire's: one JSON object per line, with
its own ``{"type": "ping", "sent_at": ...}`` and ``{"type": "pong", "sent_at": ...}``
messages. ``pulsewire.Heartbeat`` decides when to ping and when the peer is suspect or
dead (and measures the RTT); this file does the I/O. The server is any implementation of
the protocol that answers pings; it needs no pulsewire at all.

    python ndjson_heartbeat.py server [PORT]
        listen on 127.0.0.1 (port 0: any), print "READY <port>"; answer pings, echo the rest
    python ndjson_heartbeat.py client PORT [--interval 0.2] [--timeout 1.0]
        print "READY", then "PONG <rtt ms>" per answered ping, "SUSPECT <silence>" and,
        at the verdict, "DEAD <reason> silence=<seconds>"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any

from pulsewire import Decision, Heartbeat, Policy, Reason


class Clock:
    """The loop's clock, never going back on a time it has handed out."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._floor = self._loop.time()

    def __call__(self) -> float:
        self._floor = max(self._floor, self._loop.time())
        return self._floor

    def at_least(self, deadline: float) -> float:
        """A timer may fire early by the clock's resolution: act at the deadline itself."""
        self._floor = max(self(), deadline)
        return self._floor


async def run_client(port: int, policy: Policy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock = Clock()
    heartbeat = Heartbeat(policy, now=clock())
    print("READY", flush=True)

    def send(message: dict[str, Any]) -> None:
        writer.write(json.dumps(message).encode() + b"\n")
        heartbeat.sent(clock())

    async def read() -> None:
        while line := await reader.readline():
            now = clock()
            message = json.loads(line)
            if message["type"] == "pong":
                heartbeat.pong(sent_at=message["sent_at"], now=now)
                print(f"PONG {(now - message['sent_at']) * 1000:.2f}", flush=True)
            elif message["type"] == "ping":
                heartbeat.pinged(now)
                send({"type": "pong", "sent_at": message["sent_at"]})
            else:
                heartbeat.heard_from(now)
        heartbeat.lost(Reason.EOF, clock())

    reading = asyncio.create_task(read())
    while heartbeat.death is None:
        deadline = heartbeat.next_deadline()
        assert deadline is not None
        await asyncio.wait({reading}, timeout=max(0.0, deadline - clock()))
        if reading.done():
            break
        now = clock.at_least(deadline)
        decision = heartbeat.poll(now)
        if Decision.SUSPECT in decision:
            print(f"SUSPECT {heartbeat.silence(now):.3f}", flush=True)
        if Decision.PING in decision:
            send({"type": "ping", "sent_at": now})
    death = heartbeat.death
    assert death is not None
    print(f"DEAD {death.reason.value} silence={death.silence:.3f}", flush=True)
    reading.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reading
    writer.close()


async def run_server(port: int) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                message = json.loads(line)
                if message["type"] == "ping":
                    message = {"type": "pong", "sent_at": message["sent_at"]}
                writer.write(json.dumps(message).encode() + b"\n")
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", port)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["server", "client"])
    parser.add_argument("port", type=int, nargs="?", default=0)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=1.0)
    args = parser.parse_args()
    if args.mode == "server":
        asyncio.run(run_server(args.port))
    else:
        asyncio.run(run_client(args.port, Policy(interval=args.interval, timeout=args.timeout)))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
