"""model_idle: the Python side of an idle heartbeat exchange, without sockets or noise.

``bench_idle.py`` measures the real thing, but on a shared machine its per-exchange ratio
moves by 10-30 % from one round to the next, more than most single changes to the
heartbeat path are worth. This model runs N client/server pairs of pulsewire's real
``PulsewireProtocol``/``Session``/``DeadlineScheduler`` in one process, over fake
transports and a fake clock (1/128 s steps), and measures what an exchange costs in the
interpreter; ``floor`` runs ``bench_idle.py``'s own Protocol+ticker floor the same way.
Delivery (copying each write into the peer's read buffer) is the model's own and is
counted in both.

Under ``--callgrind`` it runs itself twice under ``valgrind --tool=callgrind
--cache-sim=yes`` (warm-up, then a 2 s and a 4 s window) and reports the difference per
exchange: instructions, and misses of a 1 MiB last-level cache (about this machine's L2
per core). Those counts hardly move for the same code, whatever else the machine does
(the jitter is seeded; object addresses still vary: about ±1 LL miss per exchange), so
they can judge a change that the timed benchmark cannot. Misses are of a model in which
both sides share one cache, not of the real two processes: compare like with like.

    python benchmarks/model_idle.py                       # floor, pulsewire, auto; N = 10,000
    python benchmarks/model_idle.py --callgrind           # the same, counted (about 2 min)
    python benchmarks/model_idle.py --smoke               # N = 200, 1 s: a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

KINDS = ("floor", "pulsewire", "auto")  # auto: pulsewire with Policy.auto()
STEP = 1 / 128  # the fake clock's step: one pulsewire scheduler tick
WARMUP = 3.0  # simulated seconds before a window
# Policy.auto() settles after 30 answers a side (about half a minute): window well after that.
WARMUP_AUTO = 70.0


class _Handle:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """What a DeadlineScheduler (one armed timer) and the floor's ticker need of a loop."""

    def __init__(self) -> None:
        self.now = 0.0
        self._handle: _Handle | None = None

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Handle:
        self._handle = _Handle(when, callback)
        return self._handle

    def run_due(self) -> None:
        handle = self._handle
        if handle is not None and not handle.cancelled and handle.when <= self.now:
            self._handle = None
            handle.callback()


class FakeTransport:
    """Collects writes; ``deliver`` hands them to the peer protocol's read buffer."""

    __slots__ = ("outbox", "peer", "written")

    def __init__(self, outbox: list[FakeTransport]) -> None:
        self.written: list[bytes] = []
        self.outbox = outbox
        self.peer: asyncio.BufferedProtocol | None = None

    def write(self, data: bytes) -> None:
        if not self.written:
            self.outbox.append(self)
        self.written.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def deliver(outbox: list[FakeTransport]) -> int:
    """Deliver every queued write to its peer, one read per transport; the writes count."""
    count = 0
    while outbox:
        batch = outbox[:]
        outbox.clear()
        for transport in batch:
            data = b"".join(transport.written)
            transport.written.clear()
            peer = transport.peer
            assert peer is not None
            buffer = peer.get_buffer(len(data))
            buffer[: len(data)] = data
            peer.buffer_updated(len(data))
            count += 1
    return count


# ------------------------------------------------------------------ the model


class Model:
    """N pairs of one kind, the client's loop and the server's, and their outboxes."""

    def __init__(self, kind: str, n: int) -> None:
        self.client_loop, self.server_loop = FakeLoop(), FakeLoop()
        self.to_server: list[FakeTransport] = []
        self.to_client: list[FakeTransport] = []
        self.pairs: list[tuple[Any, Any]] = []
        self._floor_client = None
        if kind == "floor":
            self._build_floor(n)
        else:
            self._build_pulsewire(n, adaptive=kind == "auto")

    def _pair(self, client: Any, server: Any) -> tuple[FakeTransport, FakeTransport]:
        to_server, to_client = FakeTransport(self.to_server), FakeTransport(self.to_client)
        to_server.peer, to_client.peer = server, client
        self.pairs.append((client, server))
        return to_server, to_client

    def _build_floor(self, n: int) -> None:
        # bench_idle's own floor, so that both measure the same code.
        from idle.variants import FloorProtocol, FloorSide

        client_side = FloorSide(self.client_loop, "client")  # type: ignore[arg-type]
        server_side = FloorSide(self.server_loop, "server")  # type: ignore[arg-type]
        for _ in range(n):
            client, server = FloorProtocol(client_side), FloorProtocol(server_side)
            to_server, to_client = self._pair(client, server)
            client.connection_made(to_server)  # type: ignore[arg-type]
            server.connection_made(to_client)  # type: ignore[arg-type]
        self._floor_client: Any = client_side

    def _build_pulsewire(self, n: int, *, adaptive: bool) -> None:
        import structlog

        from pulsewire import Limits, Policy, SocketOptions
        from pulsewire.asyncio.connection import Connection
        from pulsewire.asyncio.protocol import PulsewireProtocol
        from pulsewire.asyncio.scheduler import DeadlineScheduler

        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
            logger_factory=structlog.ReturnLoggerFactory(),  # log events go nowhere
            cache_logger_on_first_use=True,
        )
        logging.getLogger("pulsewire").setLevel(logging.CRITICAL)  # nor through logging
        settings = {
            "policy": Policy.auto() if adaptive else Policy(interval=1.0, timeout=3.0),
            "limits": Limits(),
            "socket_options": SocketOptions(),
            "name": "",
        }
        client_scheduler = DeadlineScheduler(self.client_loop)  # type: ignore[arg-type]
        server_scheduler = DeadlineScheduler(self.server_loop)  # type: ignore[arg-type]
        # The loops' jitter sources, seeded so that counted runs repeat.
        client_scheduler.rng.seed(1)
        server_scheduler.rng.seed(2)
        self.connections: list[Connection] = []  # the protocols' owners live as long
        for _ in range(n):
            client = PulsewireProtocol(client_scheduler, initiator=True, **settings)
            server = PulsewireProtocol(server_scheduler, initiator=False, **settings)
            self.connections += [Connection(client), Connection(server)]
            to_server, to_client = self._pair(client, server)
            client.connection_made(to_server)  # type: ignore[arg-type]
            server.connection_made(to_client)  # type: ignore[arg-type]
        while self.to_server or self.to_client:  # the handshakes
            deliver(self.to_server)
            deliver(self.to_client)
        dead = [p for pair in self.pairs for p in pair if p.session.state.value != "alive"]
        if dead:
            raise SystemExit(f"model_idle: {len(dead)} sessions not alive after the handshake")

    def lost(self) -> int:
        """Connections that went silent (a model that loses any measures nothing)."""
        if self._floor_client is not None:
            return int(self._floor_client.lost)
        return sum(p.session.state.value != "alive" for pair in self.pairs for p in pair)

    def step(self) -> tuple[float, float, int]:
        """One tick: client timers, PINGs to the server, PONGs back, server timers.

        Returns (client seconds, server seconds, PINGs delivered).
        """
        clock = time.perf_counter
        self.client_loop.now = self.server_loop.now = self.client_loop.now + STEP
        t0 = clock()
        self.client_loop.run_due()
        t1 = clock()
        pings = deliver(self.to_server)
        t2 = clock()
        deliver(self.to_client)
        t3 = clock()
        self.server_loop.run_due()
        t4 = clock()
        return (t1 - t0) + (t3 - t2), (t2 - t1) + (t4 - t3), pings


def measure(kind: str, n: int, seconds: float) -> dict[str, float]:
    model = Model(kind, n)
    warmup = WARMUP_AUTO if kind == "auto" else WARMUP
    while model.client_loop.now < warmup:
        model.step()
    gc.collect()
    gc.freeze()  # what bench_idle's processes hold is old: keep the collector off it
    client = server = 0.0
    exchanges = 0
    end = model.client_loop.now + seconds
    while model.client_loop.now < end:
        c, s, pings = model.step()
        client, server, exchanges = client + c, server + s, exchanges + pings
    if model.lost():
        raise SystemExit(f"model_idle: {model.lost()} {kind} connections went silent")
    return {
        "exchanges": exchanges,
        "client_us": client / exchanges * 1e6,
        "server_us": server / exchanges * 1e6,
    }


def _line(kind: str, result: dict[str, float]) -> str:
    return (
        f"| {kind} | {result['exchanges']:.0f} | {result['client_us']:.2f} | "
        f"{result['server_us']:.2f} | {result['client_us'] + result['server_us']:.2f} |"
    )


def timed(kinds: list[str], n: int, seconds: float, runs: int) -> list[str]:
    lines = [
        f"Timed, N = {n:,}, {seconds:g} s simulated, median of {runs} runs (µs per exchange):",
        "",
        "| kind | exchanges | client µs | server µs | total µs |",
        "|---|---|---|---|---|",
    ]
    for kind in kinds:
        results = sorted(
            (measure(kind, n, seconds) for _ in range(runs)),
            key=lambda r: r["client_us"] + r["server_us"],
        )
        lines.append(_line(kind, results[len(results) // 2]))
    return lines


def _callgrind_totals(kind: str, n: int, seconds: float, work: Path) -> tuple[dict[str, int], int]:
    out = work / f"{kind}.{seconds:g}.out"
    run = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--cache-sim=yes",
            "--LL=1048576,16,64",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-O",
            __file__,
            "--worker",
            kind,
            str(n),
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    if run.returncode != 0:
        raise SystemExit(f"model_idle: callgrind run failed: {run.stderr[-2000:]}")
    text = out.read_text()
    events = re.search(r"^events: (.*)$", text, re.M)
    totals = re.search(r"^(?:totals|summary): (.*)$", text, re.M)
    exchanges = re.search(r"exchanges=(\d+)", run.stdout)
    if events is None or totals is None or exchanges is None:
        raise SystemExit(f"model_idle: unexpected callgrind output in {out}")
    counts = dict(zip(events.group(1).split(), map(int, totals.group(1).split()), strict=False))
    return counts, int(exchanges.group(1))


def counted(kinds: list[str], n: int) -> list[str]:
    if shutil.which("valgrind") is None:
        raise SystemExit("model_idle: --callgrind needs valgrind")
    lines = [
        f"Counted by callgrind, N = {n:,}: the difference between a 4 s and a 2 s window,",
        "per exchange (LL: a 1 MiB, 16-way last-level cache):",
        "",
        "| kind | instructions | L1 data misses | LL misses |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        for kind in kinds:
            short, short_ex = _callgrind_totals(kind, n, 2.0, Path(scratch))
            long, long_ex = _callgrind_totals(kind, n, 4.0, Path(scratch))
            per = long_ex - short_ex

            def each(*names: str, a: dict[str, int] = short, b: dict[str, int] = long) -> float:
                return sum(b[name] - a[name] for name in names) / per  # noqa: B023

            lines.append(
                f"| {kind} | {each('Ir'):,.0f} | {each('D1mr', 'D1mw'):.0f} | "
                f"{each('DLmr', 'DLmw'):.1f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="connection pairs")
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated window")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--callgrind", action="store_true", help="count, do not time")
    parser.add_argument("--smoke", action="store_true", help="N = 200, 1 s, one run")
    parser.add_argument(
        "--worker", nargs=3, metavar=("KIND", "N", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        kind, n, seconds = args.worker[0], int(args.worker[1]), float(args.worker[2])
        print(f"exchanges={measure(kind, n, seconds)['exchanges']:.0f}")
        return
    kinds = [kind for kind in args.kinds.split(",") if kind]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    if args.smoke:
        args.n, args.seconds, args.runs = 200, 1.0, 1
    print(f"model_idle, Python {sys.version.split()[0]}, pid {os.getpid()}")
    lines = (
        counted(kinds, args.n) if args.callgrind else timed(kinds, args.n, args.seconds, args.runs)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
