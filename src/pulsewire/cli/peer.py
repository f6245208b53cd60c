"""A peer process for ``pulsewire demo``: a pulsewire echo client plus a plain TCP socket.

``python -m pulsewire.cli.peer --port P --plain-port Q --name NAME --policy JSON`` connects
a pulsewire client to ``P`` (echoing every message) and a plain TCP socket to ``Q``, on
which kernel keepalive is tuned as tightly as the kernel allows, so that the demo can
compare what each notices. It prints ``READY`` and waits for the demo's faults:

- SIGUSR1: reset both connections (SO_LINGER 0: the kernel sends RST) and exit;
- SIGUSR2: tell the demo (a ``stall`` message) and block the event loop with a synchronous
  ``time.sleep(--stall)``, as a blocking call in a handler or a long GC pause would, then
  carry on;
- SIGSTOP freezes it and SIGKILL kills it: the demo sends those itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import struct
import sys
import time

import msgspec

from pulsewire.asyncio.client import connect
from pulsewire.asyncio.connection import Connection
from pulsewire.cli.options import configure_logging
from pulsewire.core.keepalive import KernelKeepalive
from pulsewire.core.policy import Policy
from pulsewire.kernel import apply_keepalive

__all__ = ["TIGHTEST_KEEPALIVE", "main"]

#: Kernel keepalive as tight as Linux allows: probe after 1 s idle, every 1 s, give up
#: after 1 unanswered probe (the socket options take whole seconds, 1 at least).
TIGHTEST_KEEPALIVE = KernelKeepalive(idle=1, interval=1, count=1)

#: The message a peer sends just before it blocks its loop: ``stall <seconds>``.
STALL_MESSAGE = b"stall"

_LINGER_ZERO = struct.pack("ii", 1, 0)


def _linger_zero(sock: socket.socket | None) -> None:
    """Make the next close send RST instead of FIN."""
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)


async def _stall(connection: Connection, seconds: float) -> None:
    # send() writes at once when nothing is queued: the demo learns when the stall began.
    await connection.send(STALL_MESSAGE + f" {seconds:g}".encode())
    await asyncio.sleep(0)
    time.sleep(seconds)  # noqa: ASYNC251 - deliberately blocking: the fault under test


async def run(
    host: str, port: int, plain_port: int, name: str, policy: Policy, stall: float
) -> int:
    connection = await connect(host, port, policy=policy, name=name)
    plain = socket.create_connection((host, plain_port))
    apply_keepalive(plain, TIGHTEST_KEEPALIVE)
    plain.sendall(name.encode() + b"\n")
    loop = asyncio.get_running_loop()
    reset = asyncio.Event()
    stalls: set[asyncio.Task[None]] = set()

    def start_stall() -> None:
        task = loop.create_task(_stall(connection, stall))
        stalls.add(task)
        task.add_done_callback(stalls.discard)

    loop.add_signal_handler(signal.SIGUSR1, reset.set)
    loop.add_signal_handler(signal.SIGUSR2, start_stall)
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
    for task in (echo_task, reset_task):
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plain-port", type=int, required=True)
    parser.add_argument("--name", default="peer")
    parser.add_argument("--policy", default="{}", help="the Policy as JSON")
    parser.add_argument("--stall", type=float, default=2.0, help="seconds to block on SIGUSR2")
    args = parser.parse_args()
    configure_logging(verbose=False)
    try:
        policy = msgspec.json.decode(args.policy, type=Policy)
        code = asyncio.run(
            run(args.host, args.port, args.plain_port, args.name, policy, args.stall)
        )
    except Exception:  # the demo kills us in various ways; exit quietly
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
