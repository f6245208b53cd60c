"""``pulsewire serve``: an echo server that prints each peer's status as it changes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from typing import Any

from pulsewire.asyncio.connection import Connection
from pulsewire.asyncio.server import Server, serve
from pulsewire.cli.options import (
    EXIT_USAGE,
    CliError,
    add_policy_options,
    add_verbose_option,
    policy_from_args,
    policy_label,
)
from pulsewire.core.events import Death
from pulsewire.core.policy import Policy

__all__ = ["DEFAULT_PORT", "add_parser", "run"]

#: The port ``serve`` listens on (and ``probe`` examples use) unless told otherwise.
DEFAULT_PORT = 8765

DESCRIPTION = """\
Listen for pulsewire connections on HOST:PORT and echo every message back to its sender.
One line per status change of each peer on stdout: connected (with the negotiated ping
intervals), suspect, alive again, dead (with the reason, the silence and the last RTT).
The first line says where it listens: with --port 0, read the port from it.

Stop it with Ctrl-C or SIGTERM: every connection is closed in order (GOING_AWAY) and a
summary is printed.
"""

EPILOG = """\
exit codes: 0 stopped by Ctrl-C or SIGTERM; 1 cannot listen on HOST:PORT (address in use,
unknown host); 2 bad arguments (a one-line error on stderr).

examples:
  pulsewire serve                          127.0.0.1:8765, default policy
  pulsewire serve --host 0.0.0.0 --policy lan
  pulsewire probe 127.0.0.1:8765           in another terminal
"""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="run a pulsewire echo server that prints each peer's status",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1; 0.0.0.0 or :: for every interface)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on (default: {DEFAULT_PORT}; 0: any free port)",
    )
    add_policy_options(parser)
    add_verbose_option(parser)
    parser.set_defaults(run=run)


def _stamp() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


def _say(peer: str, event: str, details: str = "") -> None:
    print(f"{_stamp()}  {peer:<21}  {event:<9}  {details}".rstrip(), flush=True)


class EchoServer(Server):
    """Echoes every message; prints every status change."""

    async def on_connect(self, connection: Connection) -> None:
        negotiated = connection.negotiated
        details = f"name={connection.peer_name!r}" if connection.peer_name else ""
        if negotiated is not None:
            details += (
                f" ping intervals: ours {negotiated.ping_interval:g} s, "
                f"the peer's {negotiated.peer_ping_interval:g} s"
            )
        _say(connection.peer_address, "connected", details.strip())

    async def on_message(self, connection: Connection, message: bytes) -> None:
        await connection.send(message)

    async def on_suspect(self, connection: Connection) -> None:
        try:
            silence = f"silent for {connection.stats().silence:.2f} s"
        except Exception:
            silence = ""
        _say(connection.peer_address, "suspect", silence)

    async def on_recover(self, connection: Connection) -> None:
        _say(connection.peer_address, "alive", "answering again")

    async def on_dead(self, connection: Connection, death: Death) -> None:
        _say(connection.peer_address, "dead", death.describe())


def _where(sock: Any) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _serve(host: str, port: int, policy: Policy, label: str) -> int:
    try:
        listener = await serve(EchoServer(), host, port, policy=policy, name="pulsewire-serve")
    except OSError as error:
        raise CliError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    addresses = ", ".join(_where(sock) for sock in listener.sockets)
    print(f"pulsewire serve: listening on {addresses}", flush=True)
    print(f"policy {label}: {policy.describe()}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await listener.close()
    stats = listener.stats()
    deaths = ", ".join(f"{reason} {count}" for reason, count in sorted(stats.deaths.items()))
    # What the server's own limits turned away, when they did (see docs/security.md).
    turned_away = ", ".join(
        f"{what} {count}"
        for what, count in (
            ("refused", stats.refused),
            ("shed", stats.shed),
            ("failed handshakes", sum(stats.handshake_failures.values())),
        )
        if count
    )
    print(
        f"pulsewire serve: stopped; {stats.accepted} connection(s) served"
        + (f"; ended by {deaths}" if deaths else "")
        + (f"; {turned_away}" if turned_away else ""),
        flush=True,
    )
    return 0


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CliError(f"port must be between 0 and 65535, got {args.port}", EXIT_USAGE)
    policy = policy_from_args(args)
    return asyncio.run(_serve(args.host, args.port, policy, policy_label(args)))
