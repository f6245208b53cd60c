"""``pulsewire probe HOST:PORT``: like ``ping``, over a pulsewire connection.

The probe is a pulsewire client in strict mode (only PONGs count as evidence of life, so
it proves that the server's event loop answers) with no ping jitter: it pings once per
interval and prints one line per PONG with its RTT and the connection's state, and a line
for each change of state. It watches ``connection.stats()`` for new PONGs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import time
from typing import Any

import msgspec

from pulsewire.asyncio.client import connect
from pulsewire.asyncio.connection import Connection
from pulsewire.cli.options import (
    CliError,
    add_policy_options,
    add_verbose_option,
    format_ms,
    parse_address,
    policy_from_args,
    positive_int,
)
from pulsewire.core.events import Death
from pulsewire.core.policy import Evidence, Policy
from pulsewire.core.states import Reason, State
from pulsewire.errors import ConnectError, PulsewireError

__all__ = ["ProbeSummary", "add_parser", "run"]

DESCRIPTION = """\
Connect to a pulsewire server (for instance `pulsewire serve`) and ping it, like ping(8):
one line per answer with its round-trip time and the connection's state, one line for each
change of state (SUSPECT, ALIVE again, DEAD with the reason), and a summary with
min/avg/max RTT and the unanswered pings on Ctrl-C or after -c COUNT answers.

Only PONGs count as evidence of life (strict mode): an answer proves that the server's
event loop runs, not just its kernel.
"""

EPILOG = """\
exit codes: 0 the server answered (and was still alive at the end); 1 it died, or never
answered (unreachable, refused, not a pulsewire server); 2 bad arguments (a one-line
error on stderr).

examples:
  pulsewire probe 127.0.0.1:8765
  pulsewire probe -c 5 -i 0.2 db.internal:7000
  pulsewire probe --policy wan [2001:db8::1]:7000
"""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "probe",
        help="ping a pulsewire server: RTT and state per heartbeat, like ping",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument("address", metavar="HOST:PORT", help="the server ([IPv6]:PORT too)")
    parser.add_argument(
        "-c",
        "--count",
        type=positive_int,
        metavar="COUNT",
        help="stop after COUNT answers (default: until Ctrl-C or the server dies)",
    )
    parser.add_argument(
        "--name", default="pulsewire-probe", help="the name the probe gives in its HELLO"
    )
    add_policy_options(parser, short=True)
    add_verbose_option(parser)
    parser.set_defaults(run=run)


class ProbeSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What the probe saw: for the closing lines and the exit code."""

    pings_sent: int
    pongs: int
    rtts: tuple[float, ...]
    elapsed: float
    death: Death | None  #: None when the probe itself closed the connection in order

    @property
    def unanswered(self) -> float:
        """Fraction of pings without an answer, 0.0 to 1.0."""
        if self.pings_sent == 0:
            return 0.0
        return max(0, self.pings_sent - self.pongs) / self.pings_sent

    def lines(self, where: str) -> list[str]:
        lines = [
            f"--- {where} pulsewire probe statistics ---",
            f"{self.pings_sent} pings sent, {self.pongs} answered, "
            f"{self.unanswered:.1%} unanswered, time {self.elapsed:.1f} s",
        ]
        if self.rtts:
            mean = sum(self.rtts) / len(self.rtts)
            mdev = math.sqrt(sum((rtt - mean) ** 2 for rtt in self.rtts) / len(self.rtts))
            figures = (min(self.rtts), mean, max(self.rtts), mdev)
            lines.append(
                "rtt min/avg/max/mdev = " + "/".join(f"{rtt * 1000:.3f}" for rtt in figures) + " ms"
            )
        return lines


def _probe_policy(args: argparse.Namespace) -> Policy:
    # Strict mode, and no jitter: one PING per interval, each answered by the server's loop.
    return policy_from_args(args, evidence=Evidence.PONG, jitter=0.0)


def _poll_every(policy: Policy) -> float:
    return max(0.002, min(0.02, policy.interval / 50))


async def _probe(
    host: str, port: int, policy: Policy, count: int | None, name: str
) -> ProbeSummary:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    print(
        f"PROBE {where}: ping after {policy.interval:g} s of silence, "
        f"dead after {policy.timeout:g} s without an answer",
        flush=True,
    )
    started = time.monotonic()
    try:
        connection = await connect(host, port, policy=policy, name=name)
    except ConnectError as error:
        raise CliError(str(error)) from None
    except OSError as error:  # e.g. a name that does not resolve, raised before connecting
        raise CliError(f"could not connect to {where}: {error}") from None
    negotiated = connection.negotiated
    peer = f" ({connection.peer_name!r})" if connection.peer_name else ""
    print(
        f"connected to {where}{peer} in {format_ms(time.monotonic() - started)}",
        flush=True,
    )
    if negotiated is not None and negotiated.ping_interval > policy.interval:
        print(
            f"the server accepts pings at most every {negotiated.ping_interval:g} s",
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(sig, stop.set)
    rtts: list[float] = []
    connected_at = time.monotonic()
    try:
        await _watch(connection, where, count, stop, rtts)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, AttributeError):
                loop.remove_signal_handler(sig)
    stats = _final_stats(connection)
    death = connection.death
    if death is None:
        with contextlib.suppress(PulsewireError):
            await connection.close()
    elif death.reason is not Reason.LOCAL_CLOSE:
        print(f"{where} is DEAD: {death.describe()}", flush=True)
    return ProbeSummary(
        pings_sent=stats[0],
        pongs=stats[1],
        rtts=tuple(rtts),
        elapsed=time.monotonic() - connected_at,
        death=None if death is None or death.reason is Reason.LOCAL_CLOSE else death,
    )


async def _watch(
    connection: Connection, where: str, count: int | None, stop: asyncio.Event, rtts: list[float]
) -> None:
    """Print each new PONG and each change of state until ``count``, ``stop`` or the death.

    The connection is polled (``stats()``, a frozen snapshot) every fiftieth of the ping
    interval, so that no PONG goes by unseen.
    """
    poll = _poll_every(connection.policy)
    seen = 0
    state = State.ALIVE
    dead = asyncio.ensure_future(connection.wait_dead())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while True:
            try:
                stats = connection.stats()
            except Exception:  # torn down under us: the death says why
                return
            if stats.pongs_received > seen and stats.rtt_last is not None:
                seen = stats.pongs_received
                rtts.append(stats.rtt_last)
                print(
                    f"pong from {where}: seq={seen} rtt={format_ms(stats.rtt_last)} "
                    f"state={stats.state.value}",
                    flush=True,
                )
            if stats.state is not state and stats.state in (State.ALIVE, State.SUSPECT):
                if stats.state is State.SUSPECT:
                    print(f"{where} is SUSPECT: no answer for {stats.silence:.2f} s", flush=True)
                else:
                    print(f"{where} is ALIVE again", flush=True)
                state = stats.state
            if dead.done() or stopping.done() or (count is not None and seen >= count):
                return
            await asyncio.wait({dead, stopping}, timeout=poll)
    finally:
        stopping.cancel()
        if not dead.done():
            dead.cancel()


def _final_stats(connection: Connection) -> tuple[int, int]:
    try:
        stats = connection.stats()
    except Exception:  # never established
        return 0, 0
    return stats.pings_sent, stats.pongs_received


def run(args: argparse.Namespace) -> int:
    host, port = parse_address(args.address)
    policy = _probe_policy(args)
    summary = asyncio.run(_probe(host, port, policy, args.count, args.name))
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    print()
    for line in summary.lines(where):
        print(line)
    return 0 if summary.pongs > 0 and summary.death is None else 1
