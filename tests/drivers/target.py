"""A pulsewire echo server to attack, run as a subprocess (signal it by its PID).

    target.py [--nofile N] [--max-connections N] [--inbound-budget B] [--handshake-timeout S]
              [--frame-timeout S] [--message-timeout S] [--min-message-rate R]

Prints ``READY <port> <rss>`` once listening; then, for each line ``stats`` on stdin, one
JSON line: the listener's counters, the resident set now and at its peak (bytes), the
scheduler's figures. It stops at the end of stdin. ``--nofile`` lowers the soft
RLIMIT_NOFILE of this process, and of this process only. Logs go to stderr (WARNING and
up, as an operator's default), so that the test can measure their volume.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import sys

import pulsewire
from pulsewire.asyncio.scheduler import scheduler_for


def rss() -> tuple[int, int]:
    """Resident set now, and at its peak, in bytes: VmRSS and VmHWM of this process's own
    memory (``getrusage``'s ru_maxrss would include the parent's peak: it survives exec)."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            fields[name] = value
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


async def serve(args: argparse.Namespace) -> None:
    async def echo(connection: pulsewire.Connection) -> None:
        async for message in connection:
            await connection.send(message)

    limits = pulsewire.Limits(
        frame_timeout=args.frame_timeout,
        message_timeout=args.message_timeout,
        min_message_rate=args.min_message_rate,
    )
    server_limits = pulsewire.ServerLimits(
        max_connections=args.max_connections, inbound_budget=args.inbound_budget
    )
    listener = await pulsewire.serve(
        echo,
        policy=pulsewire.Policy(handshake_timeout=args.handshake_timeout),
        limits=limits,
        server_limits=server_limits,
        name="target",
    )
    scheduler = scheduler_for(asyncio.get_running_loop())
    print(f"READY {listener.port} {rss()[0]}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with listener:
        while line := await reader.readline():
            if line.strip() == b"stats":
                now, peak = rss()
                stats = listener.stats()
                print(
                    json.dumps(
                        {
                            "rss": now,
                            "peak_rss": peak,
                            "active": stats.active,
                            "accepted": stats.accepted,
                            "refused": stats.refused,
                            "shed": stats.shed,
                            "accept_failures": stats.accept_failures,
                            "deaths": stats.deaths,
                            "handshake_failures": stats.handshake_failures,
                            "max_connections": stats.max_connections,
                            "inbound_held": stats.inbound_held,
                            "peak_inbound_held": stats.peak_inbound_held,
                            "stalled": scheduler.stalled,
                            "overloaded": scheduler.overloaded,
                        }
                    ),
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nofile", type=int, default=0)
    parser.add_argument("--max-connections", type=int, default=None)
    parser.add_argument("--inbound-budget", type=int, default=256 * 1024 * 1024)
    parser.add_argument("--handshake-timeout", type=float, default=10.0)
    parser.add_argument("--frame-timeout", type=float, default=30.0)
    parser.add_argument("--message-timeout", type=float, default=30.0)
    parser.add_argument("--min-message-rate", type=float, default=1024.0)
    args = parser.parse_args()
    if args.nofile:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
