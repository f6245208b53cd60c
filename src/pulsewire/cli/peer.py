"""A peer process for the demo: a pulsewire echo client plus a plain TCP socket.

``python -m pulsewire.cli.peer --port P --plain-port Q --name NAME`` connects a pulsewire
client to ``P`` (echoing every message) and a plain TCP socket to ``Q`` (so the observer
can watch what kernel keepalive notices), prints ``READY`` and waits. On SIGUSR1 it resets
both connections (SO_LINGER 0: the kernel sends RST) and exits. SIGSTOP freezes it,
SIGKILL kills it: the demo uses both.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import struct
import sys

from pulsewire.asyncio.client import connect
from pulsewire.cli import configure_logging
from pulsewire.core.policy import Policy

_LINGER_ZERO = struct.pack("ii", 1, 0)


def _linger_zero(sock: socket.socket | None) -> None:
    """Make the next close send RST instead of FIN."""
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)


async def run(port: int, plain_port: int, name: str, policy: Policy) -> int:
    connection = await connect("127.0.0.1", port, policy=policy, name=name)
    plain = socket.create_connection(("127.0.0.1", plain_port))
    plain.sendall(name.encode() + b"\n")
    reset = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, reset.set)
    print("READY", flush=True)

    async def echo() -> None:
        async for message in connection:
            await connection.send(message)

    echo_task = asyncio.create_task(echo())
    reset_task = asyncio.create_task(reset.wait())
    await asyncio.wait({echo_task, reset_task}, return_when=asyncio.FIRST_COMPLETED)
    if reset.is_set():
        _linger_zero(connection.get_extra_info("socket"))
        connection.abort()
        _linger_zero(plain)
        plain.close()
        return 0
    plain.close()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plain-port", type=int, required=True)
    parser.add_argument("--name", default="peer")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    configure_logging(verbose=False)
    try:
        policy = Policy(interval=args.interval, timeout=args.timeout)
        sys.exit(asyncio.run(run(args.port, args.plain_port, args.name, policy)))
    except Exception:  # the demo kills us in various ways; exit quietly
        sys.exit(1)


if __name__ == "__main__":
    main()
