"""bench_idle: what N idle connections with a 1 s heartbeat cost, pulsewire vs baselines.

Layout: for every (N, variant, loop) this script (the orchestrator) starts a **server
process** and a separate **client process** (this same file, run with ``--worker``); the
client opens N connections over loopback, 200 at a time; both sides then sit idle but for
their heartbeats and, after a warm-up, measure ``--runs`` steady-state windows back to back
(``--fresh``: a new process pair for every run instead, round by round). The orchestrator
talks to the workers with one JSON object per line over their stdin/stdout, bounds every
wait, and kills (by PID) every worker it started, on errors and on Ctrl-C too; a worker
also exits when its stdin closes and after ``--max-lifetime``. Each measurement uses a
fresh 127.0.0.x server address, so no 4-tuple is reused from TIME_WAIT.

Variants (same N, same process layout, both sides, 1 s heartbeat, 3 s timeout):

- ``none``: asyncio streams, connections just held (no heartbeat): the memory baseline;
- ``tasks``: streams with a hand-written heartbeat: per connection and per side a task that
  sleeps 1 s, writes a 9-byte PING and drains, and a reader task that answers PONG; a side
  that hears no PONG for 3 s closes the connection and counts it as lost; the heartbeat
  tasks start once all connections are open (see :class:`TasksSide`);
- ``floor``: ``asyncio.BufferedProtocol`` (one shared 4 KiB read buffer) and one loop-wide
  ``call_at`` ticker on the client that pings a 1/100th bucket of the connections every
  10 ms; the server only answers; the client counts a connection silent for 3 s as lost;
- ``websockets``: ``websockets.asyncio`` with ``ping_interval=1, ping_timeout=20`` and
  ``compression=None`` (permessage-deflate would add ~40 KiB/connection of zlib state);
  keepalive is switched on once all connections are open (see :class:`WebsocketsSide`);
- ``pulsewire``: ``Policy(interval=1.0, timeout=3.0)``, other fields at their defaults, on
  both sides; ``pulsewire.serve`` with a ``Server`` that overrides no hook.

Measured over each window, in each worker (the table shows the server unless it says cli):

- CPU: ``getrusage`` utime+stime delta, as % of one core and as µs per connection-second;
  the evidence sampler's own CPU (below) is measured and subtracted; µs per exchange is
  (server + client CPU) / PING→PONG exchanges completed (PONGs received, both sides);
- RSS per connection: (RSS at the start of the window - RSS of the same process once it
  was listening / before it connected) / N, from /proc/self/statm;
- heartbeats per connection-second: PINGs sent and received by each side, and exchanges
  (pulsewire: ``stats()`` deltas; baselines count their own);
- evidence: once a second a sampler reads the silence (time since it last heard the peer;
  pulsewire: ``stats().silence`` and ``state``) of up to 2,000 live connections (pulsewire:
  500, ``stats()`` is dear), in rotation and in small slices; the max is reported (it
  must stay well below 2 s); for pulsewire every ``peer.suspect`` and ``peer.dead`` log
  event is counted as well (structlog is configured to count and drop), so no suspicion
  goes unseen;
- deadline lateness: how late each liveness timer ran, on the loop clock (pulsewire: every
  fire of the loop-wide scheduler, via ``scheduler.on_fire``, and its ``max_lateness``,
  measured from the earliest deadline the fire served, so the scheduler's rounding up to
  its 1/128 s tick is included; a pulsewire server fires almost no timers, since the
  client leads the heartbeat and answered PINGs move the server's deadline directly;
  tasks: each ``asyncio.sleep(1)`` wake-up; floor: each ticker tick);
- loop lag: lateness of a ``call_later`` probe re-armed every 10 ms, on ``perf_counter``;
- lost: connections closed by a heartbeat timeout (false deaths: must be 0); closed: gone
  for any reason; both counted from the start of each process, connect storm included;
- GC: collections per generation and the longest pause in the window (``gc.callbacks``),
  ``gc.get_count()`` and ``len(gc.get_objects())`` before and after it;
- others' CPU: what the rest of the machine used meanwhile (/proc/stat minus both
  workers). Before each process pair the orchestrator waits (up to a total budget,
  ``--quiet-wait``) for the machine to be quiet.

The table gives medians over the runs (``lost``/``closed``: totals). Ratios of pulsewire to
the baselines are taken run by run and their median reported; the targets are checked at
the largest N. Results go to the ``## bench_idle`` section of RESULTS.md.

    python benchmarks/bench_idle.py --smoke     # N=50, 2 s, variants side by side: ~7 s
    python benchmarks/bench_idle.py             # N=1,000 and 10,000, both loops: ~8 min
    python benchmarks/bench_idle.py --n 10000 --window 20 --runs 5 --variants floor,pulsewire
    python benchmarks/bench_idle.py --n 10000 --variants pulsewire --runs 1 --profile prof/
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import cProfile
import gc
import io
import itertools
import json
import math
import os
import pstats
import random
import signal
import struct
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Coroutine, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Never

import _common as common

VARIANTS = ("none", "tasks", "floor", "websockets", "pulsewire")
LABELS = {
    "none": "no heartbeat (streams)",
    "tasks": "per-task heartbeat (streams)",
    "floor": "Protocol + ticker (floor)",
    "websockets": "websockets",
    "pulsewire": "pulsewire",
}
HEARTBEAT_VARIANTS = ("tasks", "floor", "websockets", "pulsewire")
LOOPS = ("asyncio", "uvloop")

INTERVAL = 1.0  #: heartbeat interval of every variant
TIMEOUT = 3.0  #: silence after which a baseline declares its peer dead
WS_PING_TIMEOUT = 20.0
PING, PONG = 1, 2
FRAME = struct.Struct("!BQ")  #: the baselines' 9-byte PING/PONG: kind, sequence number
FRAME_SIZE = FRAME.size
BACKLOG = 1024
SLICE = 256  #: connections inspected per turn of the loop by the sampler

SETTLE = 0.3  #: pause after the pre-window snapshots so their loop stall is not measured
RESULTS = Path(__file__).with_name("RESULTS.md")
RESULTS_HEADER = """# pulsewire benchmark results

Each section is written by the benchmark of the same name (`benchmarks/bench_*.py`) and
says how it was run. Numbers from a shared, noisy 2-core machine: compare rows of the
same run, not runs of different days.
"""


# ================================================================= worker: variants


class Side:
    """One process's half of a variant: its connections and heartbeat counters."""

    has_heartbeat = True
    #: Connections the sampler inspects per second, in rotation (all of them up to this).
    sample_per_second = 2000
    #: Connections read per turn of the loop by the sampler and by ``counters()``.
    slice = SLICE

    def __init__(self, loop: asyncio.AbstractEventLoop, role: str) -> None:
        self.loop = loop
        self.role = role
        self.conns: list[Any] = []
        self.pings_sent = 0
        self.pings_received = 0
        self.pongs_received = 0
        self.lost = 0  #: closed by a heartbeat timeout
        self.closed = 0  #: gone for any reason
        self.lateness: common.Samples | None = None  #: deadline lateness, where there are any
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start_server(self, host: str) -> int:
        raise NotImplementedError

    async def open_one(self, host: str, port: int) -> None:
        raise NotImplementedError

    def ready_count(self) -> int:
        return len(self.conns)

    async def start_heartbeat(self) -> None:
        """Called once every connection is open; most variants heartbeat from the start."""

    def inspect(self, conn: Any, now: float) -> tuple[float | None, bool]:
        """(silence in seconds or None, whether the connection is in a bad state)."""
        last_rx = getattr(conn, "last_rx", None)
        return (None if last_rx is None else now - last_rx), False

    async def counters(self) -> dict[str, int]:
        return {
            "pings_sent": self.pings_sent,
            "pings_received": self.pings_received,
            "pongs_received": self.pongs_received,
            "lost": self.lost,
            "closed": self.closed,
            "suspects": 0,
        }

    def window_started(self) -> None:
        if self.lateness is not None:
            self.lateness.start()

    def window_ended(self) -> dict[str, Any]:
        if self.lateness is not None:
            self.lateness.stop()
        return {}

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class NoHeartbeatSide(Side):
    """Streams, connections just held."""

    has_heartbeat = False

    async def start_server(self, host: str) -> int:
        server = await asyncio.start_server(self._handle, host, 0, backlog=BACKLOG)
        self._server = server
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.append(writer)
        with contextlib.suppress(ConnectionError):
            await reader.read()
        self.closed += 1

    async def open_one(self, host: str, port: int) -> None:
        _, writer = await asyncio.open_connection(host, port)
        self.conns.append(writer)


class _TaskPeer:
    __slots__ = ("closed", "last_pong", "last_rx", "ping_task", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, now: float):
        self.reader = reader
        self.writer = writer
        self.last_rx = now
        self.last_pong = now
        self.closed = False
        self.ping_task: asyncio.Task[None] | None = None


class TasksSide(NoHeartbeatSide):
    """Streams with a heartbeat task and a reader task per connection, on both sides.

    The heartbeat tasks start once all connections are open: started with each connection,
    they lose thousands of connections to false timeouts during a 10,000-connection storm
    here (the loop saturates; gen-2 pauses of 0.2-0.8 s), and the windows would then
    measure far fewer connections than the other variants.
    """

    has_heartbeat = True

    def __init__(self, loop: asyncio.AbstractEventLoop, role: str) -> None:
        super().__init__(loop, role)
        self.lateness = common.Samples()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._read_loop(self._new_peer(reader, writer))

    async def open_one(self, host: str, port: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        self.spawn(self._read_loop(self._new_peer(reader, writer)))

    def _new_peer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _TaskPeer:
        peer = _TaskPeer(reader, writer, self.loop.time())
        self.conns.append(peer)
        return peer

    async def start_heartbeat(self) -> None:
        now = self.loop.time()
        for peer in self.conns:
            if peer.closed:
                continue
            peer.last_pong = now
            peer.ping_task = self.loop.create_task(self._ping_loop(peer))
            self._tasks.add(peer.ping_task)
            peer.ping_task.add_done_callback(self._tasks.discard)

    def inspect(self, conn: Any, now: float) -> tuple[float | None, bool]:
        return (None if conn.closed else now - conn.last_rx), False

    async def _read_loop(self, peer: _TaskPeer) -> None:
        reader, writer, loop = peer.reader, peer.writer, self.loop
        try:
            while True:
                frame = await reader.readexactly(FRAME_SIZE)
                now = peer.last_rx = loop.time()
                if frame[0] == PING:
                    self.pings_received += 1
                    writer.write(bytes((PONG,)) + frame[1:])
                    await writer.drain()
                else:
                    self.pongs_received += 1
                    peer.last_pong = now
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed += 1
            peer.closed = True
            if peer.ping_task is not None:
                peer.ping_task.cancel()

    async def _ping_loop(self, peer: _TaskPeer) -> None:
        loop, lateness, writer = self.loop, self.lateness, peer.writer
        assert lateness is not None
        await asyncio.sleep(random.random() * INTERVAL)  # do not ping in lockstep
        seq = 0
        try:
            while True:
                due = loop.time() + INTERVAL
                await asyncio.sleep(INTERVAL)
                now = loop.time()
                lateness.add(now - due)
                if now - peer.last_pong > TIMEOUT:
                    self.lost += 1
                    writer.close()
                    return
                seq += 1
                writer.write(FRAME.pack(PING, seq))
                self.pings_sent += 1
                await writer.drain()
        except ConnectionError:
            return


_FLOOR_BUFFER = bytearray(4096)
_FLOOR_VIEW = memoryview(_FLOOR_BUFFER)
_FLOOR_PING = FRAME.pack(PING, 0)


class _FloorProtocol(asyncio.BufferedProtocol):
    """9-byte frames through one shared read buffer; the server answers PING with PONG."""

    __slots__ = ("_partial", "last_rx", "side", "transport")

    def __init__(self, side: FloorSide) -> None:
        self.side = side
        self.transport: asyncio.Transport | None = None
        self.last_rx = 0.0
        self._partial = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance() check: uvloop's transports do not subclass asyncio.Transport.
        self.transport = transport  # type: ignore[assignment]
        self.last_rx = self.side.loop.time()
        self.side.connection_made(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.side.closed += 1

    def get_buffer(self, sizehint: int) -> memoryview:
        return _FLOOR_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        side = self.side
        self.last_rx = side.loop.time()
        if nbytes == FRAME_SIZE and not self._partial:  # the common case: one whole frame
            self._frame(_FLOOR_BUFFER[:FRAME_SIZE])
            return
        data = self._partial + _FLOOR_BUFFER[:nbytes]
        whole = len(data) - len(data) % FRAME_SIZE
        for offset in range(0, whole, FRAME_SIZE):
            self._frame(data[offset : offset + FRAME_SIZE])
        self._partial = bytes(data[whole:])

    def _frame(self, frame: bytearray | bytes) -> None:
        side = self.side
        if frame[0] == PING:
            side.pings_received += 1
            assert self.transport is not None
            pong = bytearray(frame)
            pong[0] = PONG
            self.transport.write(pong)
        else:
            side.pongs_received += 1


class FloorSide(Side):
    """Protocol + one loop-wide ticker: the cheapest pure-Python heartbeat."""

    BUCKETS = 100

    def __init__(self, loop: asyncio.AbstractEventLoop, role: str) -> None:
        super().__init__(loop, role)
        self._buckets: list[list[_FloorProtocol]] = [[] for _ in range(self.BUCKETS)]
        self._added = 0
        self._index = 0
        self._tick = INTERVAL / self.BUCKETS
        self._due = 0.0
        if role == "client":
            self.lateness = common.Samples()
            self._due = loop.time() + self._tick
            loop.call_at(self._due, self._on_tick)

    async def start_server(self, host: str) -> int:
        server = await self.loop.create_server(
            lambda: _FloorProtocol(self), host, 0, backlog=BACKLOG
        )
        self._server = server
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def open_one(self, host: str, port: int) -> None:
        await self.loop.create_connection(lambda: _FloorProtocol(self), host, port)

    def inspect(self, conn: Any, now: float) -> tuple[float | None, bool]:
        return (None if conn.transport is None else now - conn.last_rx), False

    def connection_made(self, protocol: _FloorProtocol) -> None:
        self.conns.append(protocol)
        if self.role == "client":
            self._buckets[self._added % self.BUCKETS].append(protocol)
            self._added += 1

    def _on_tick(self) -> None:
        now = self.loop.time()
        assert self.lateness is not None
        self.lateness.add(now - self._due)
        bucket = self._buckets[self._index]
        self._index = (self._index + 1) % self.BUCKETS
        gone: list[_FloorProtocol] = []
        for protocol in bucket:
            transport = protocol.transport
            if transport is None:
                gone.append(protocol)
            elif now - protocol.last_rx > TIMEOUT:
                self.lost += 1
                transport.abort()
                gone.append(protocol)
            else:
                transport.write(_FLOOR_PING)
        self.pings_sent += len(bucket) - len(gone)
        for protocol in gone:
            bucket.remove(protocol)
        self._due += self._tick
        self.loop.call_at(self._due, self._on_tick)


def _counting_ws_class(base: type, side: Side) -> type:
    """A websockets connection class that counts PINGs and PONGs and notes the last one."""
    from websockets.frames import Opcode

    class Counting(base):  # type: ignore[misc]
        last_rx: float

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.last_rx = side.loop.time()

        def process_event(self, event: Any) -> None:
            super().process_event(event)
            opcode = getattr(event, "opcode", None)
            if opcode is Opcode.PING:
                side.pings_received += 1
                self.last_rx = side.loop.time()
            elif opcode is Opcode.PONG:
                side.pongs_received += 1
                self.last_rx = side.loop.time()

        async def ping(self, data: Any = None) -> Any:
            side.pings_sent += 1
            return await super().ping(data)

    return Counting


class WebsocketsSide(Side):
    """websockets' new asyncio implementation with its own keepalive.

    Connections are opened with keepalive off and it is switched on (``ping_interval=1``,
    spread over one interval) once all are open: with it on, the keepalive of the open
    connections starves the handshakes and opening 10,000 takes over a minute here.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, role: str) -> None:
        super().__init__(loop, role)
        # Import before the idle RSS is read, so that it is not counted per connection.
        import websockets.asyncio.client
        import websockets.asyncio.server  # noqa: F401

    async def start_server(self, host: str) -> int:
        from websockets.asyncio.server import ServerConnection, serve

        self._server = await serve(
            self._handle,
            host,
            0,
            ping_interval=None,
            ping_timeout=WS_PING_TIMEOUT,
            compression=None,
            create_connection=_counting_ws_class(ServerConnection, self),
            backlog=BACKLOG,
        )
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _handle(self, ws: Any) -> None:
        self.conns.append(ws)
        await ws.wait_closed()
        self.closed += 1
        if ws.close_code == 1011:  # "keepalive ping timeout"
            self.lost += 1

    async def open_one(self, host: str, port: int) -> None:
        from websockets.asyncio.client import ClientConnection, connect

        ws = await connect(
            f"ws://{host}:{port}/",
            ping_interval=None,
            ping_timeout=WS_PING_TIMEOUT,
            compression=None,
            create_connection=_counting_ws_class(ClientConnection, self),
            open_timeout=60,
        )
        self.conns.append(ws)

    async def start_heartbeat(self) -> None:
        conns = list(self.conns)
        slices = range(0, len(conns), SLICE)
        for start in slices:
            for ws in conns[start : start + SLICE]:
                ws.ping_interval = INTERVAL
                ws.start_keepalive()
            await asyncio.sleep(INTERVAL / len(slices))

    def inspect(self, conn: Any, now: float) -> tuple[float | None, bool]:
        from websockets.protocol import State

        closed = conn.state is State.CLOSED
        return (None if closed else now - conn.last_rx), False  # closes are counted apart

    async def counters(self) -> dict[str, int]:
        counts = await super().counters()
        if self.role == "client":
            from websockets.protocol import State

            closed = [ws for ws in self.conns if ws.state is State.CLOSED]
            counts["closed"] = len(closed)
            counts["lost"] = sum(1 for ws in closed if ws.close_code == 1011)
        return counts


class PulsewireSide(Side):
    """pulsewire on both sides; structlog counts its events, the scheduler its lateness."""

    # ``stats()`` builds a full snapshot (RTT percentiles included): tens of µs apiece.
    sample_per_second = 500
    slice = 64

    def __init__(self, loop: asyncio.AbstractEventLoop, role: str) -> None:
        super().__init__(loop, role)
        from pulsewire.asyncio.scheduler import scheduler_for

        self.log_counts: Counter[str] = Counter()
        _count_structlog_events(self.log_counts)
        self.policy = pulsewire_policy()
        self.scheduler = scheduler_for(loop)
        self.lateness = common.Samples()
        self._chain_on_fire()
        self._listener: Any = None

    def _chain_on_fire(self) -> None:
        previous = self.scheduler.on_fire
        lateness = self.lateness
        assert lateness is not None

        def on_fire(*args: float) -> None:
            # The hook's signature has changed before: lateness is its last argument.
            lateness.add(args[-1])
            if previous is not None:
                previous(*args)

        self._on_fire = on_fire
        self.scheduler.on_fire = on_fire

    async def start_server(self, host: str) -> int:
        import pulsewire

        self._listener = await pulsewire.serve(
            _make_pulsewire_hooks(), host, 0, policy=self.policy, backlog=BACKLOG
        )
        port: int = self._listener.port
        return port

    async def open_one(self, host: str, port: int) -> None:
        import pulsewire

        self.conns.append(await pulsewire.connect(host, port, policy=self.policy))

    def ready_count(self) -> int:
        from pulsewire import State

        if self._listener is None:
            return len(self.conns)
        alive = [c for c in self._listener.connections if c.state is State.ALIVE]
        if len(alive) > len(self.conns):
            self.conns = alive
        return len(alive)

    def inspect(self, conn: Any, now: float) -> tuple[float | None, bool]:
        from pulsewire import State

        stats = conn.stats()
        if stats.state is State.DEAD:
            return None, False  # deaths are counted from the log events
        return stats.silence, stats.state is State.SUSPECT

    async def counters(self) -> dict[str, int]:
        totals = {"pings_sent": 0, "pings_received": 0, "pongs_received": 0}
        for start in range(0, len(self.conns), self.slice):
            for conn in self.conns[start : start + self.slice]:
                stats = conn.stats()
                totals["pings_sent"] += stats.pings_sent
                totals["pings_received"] += stats.pings_received
                totals["pongs_received"] += stats.pongs_received
            await asyncio.sleep(0)
        deaths = {k: v for k, v in self.log_counts.items() if k.startswith("peer.dead")}
        return {
            **totals,
            "lost": self.log_counts["peer.dead:timeout"],
            "closed": sum(deaths.values()),
            "suspects": self.log_counts["peer.suspect"],
        }

    #: Scheduler counters reported as deltas over the window, where the scheduler has them.
    SCHEDULER_COUNTERS = ("fired", "stalls", "stalled", "late_fires")

    def _scheduler_counters(self) -> dict[str, float]:
        return {
            name: getattr(self.scheduler, name)
            for name in self.SCHEDULER_COUNTERS
            if hasattr(self.scheduler, name)
        }

    def window_started(self) -> None:
        super().window_started()
        self.scheduler.max_lateness = 0.0
        self._scheduler_before = self._scheduler_counters()

    def window_ended(self) -> dict[str, Any]:
        super().window_ended()
        after = self._scheduler_counters()
        return {
            "scheduler_max_lateness": self.scheduler.max_lateness,
            "scheduler": {k: v - self._scheduler_before[k] for k, v in after.items()},
            "scheduler_heap": len(self.scheduler),
            "on_fire_intact": self.scheduler.on_fire is self._on_fire,
            "log_counts": dict(self.log_counts),
        }


def pulsewire_policy() -> Any:
    """The policy both pulsewire sides use."""
    import pulsewire

    return pulsewire.Policy(interval=INTERVAL, timeout=TIMEOUT)


def _make_pulsewire_hooks() -> Any:
    from pulsewire import Server

    class Hooks(Server):
        """Only the default no-op hooks: an idle connection costs no task."""

    return Hooks()


def _count_structlog_events(counts: Counter[str]) -> None:
    """Configure structlog (this is the application) to count events by name and drop them."""
    import structlog

    def count(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Never:
        event = str(event_dict.get("event"))
        reason = event_dict.get("reason")
        counts[event if reason is None else f"{event}:{reason}"] += 1
        raise structlog.DropEvent

    structlog.configure(
        processors=[count],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=True,
    )


SIDES: dict[str, type[Side]] = {
    "none": NoHeartbeatSide,
    "tasks": TasksSide,
    "floor": FloorSide,
    "websockets": WebsocketsSide,
    "pulsewire": PulsewireSide,
}


# ================================================================= worker: measurement


class Worker:
    """Runs one side and answers the orchestrator's commands, one JSON line each."""

    def __init__(self, side: Side, n: int) -> None:
        self.side = side
        self.n = n
        self.loop = side.loop
        self.probe = common.LoopLagProbe(self.loop)
        self.gc = common.GcMonitor()
        self.rss_idle = 0
        self.sampler_cpu = 0.0
        self.max_silence = 0.0
        self.bad_seen = 0
        self._sampler: asyncio.Task[None] | None = None
        self._begin: dict[str, Any] = {}
        self._profiler: cProfile.Profile | None = None

    async def serve_commands(self, ready: dict[str, Any]) -> None:
        self.probe.start()
        self.gc.install()
        self.rss_idle = common.rss_bytes()
        common.emit({"event": "ready", "rss_idle": self.rss_idle, "pid": os.getpid(), **ready})
        reader = asyncio.StreamReader()
        await self.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            command = json.loads(line)
            if command["cmd"] == "quit":
                break
            handler = getattr(self, "cmd_" + command["cmd"])
            common.emit(await handler(command))
        sys.stdout.flush()
        os._exit(0)  # closing thousands of connections in order is not what is measured

    async def cmd_connect(self, command: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        deadline = self.loop.time() + command["timeout"]
        ok = failed = 0
        errors: list[str] = []
        while ok + failed < command["n"] and self.loop.time() < deadline:
            size = min(command["batch"], command["n"] - ok - failed)
            opening = [self.side.open_one(command["host"], command["port"]) for _ in range(size)]
            results = await asyncio.gather(*opening, return_exceptions=True)
            batch_errors = [repr(r) for r in results if isinstance(r, BaseException)]
            failed += len(batch_errors)
            ok += len(results) - len(batch_errors)
            errors += batch_errors[: 3 - len(errors)]
            if len(batch_errors) == len(results):
                break  # nothing gets through: do not wait out every timeout
        seconds = time.perf_counter() - started
        return {
            "event": "connected",
            "ok": ok,
            "failed": failed,
            "seconds": seconds,
            "errors": errors,
        }

    async def cmd_wait(self, command: dict[str, Any]) -> dict[str, Any]:
        deadline = self.loop.time() + command["timeout"]
        # Polls a count that transport callbacks keep; an Event per variant is not worth it.
        while self.side.ready_count() < command["n"] and self.loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return {"event": "accepted", "count": self.side.ready_count()}

    async def cmd_heartbeat(self, command: dict[str, Any]) -> dict[str, Any]:
        await self.side.start_heartbeat()
        return {"event": "heartbeat"}

    async def cmd_begin(self, command: dict[str, Any]) -> dict[str, Any]:
        begin: dict[str, Any] = {"rss": common.rss_bytes(), "gc_count": gc.get_count()}
        begin["profile"] = command.get("profile")
        begin["objects"] = len(gc.get_objects())
        await asyncio.sleep(SETTLE)
        begin["counters"] = await self.side.counters()
        self.probe.samples.start()
        self.gc.start()
        self.side.window_started()
        self.sampler_cpu, self.max_silence, self.bad_seen = 0.0, 0.0, 0
        self._sampler = self.loop.create_task(self._sample_forever())
        if command.get("profile"):
            self._profiler = cProfile.Profile()
            self._profiler.enable()
        begin["cpu"], begin["time"] = common.cpu_seconds(), time.perf_counter()
        self._begin = begin
        return {"event": "begun"}

    async def cmd_end(self, command: dict[str, Any]) -> dict[str, Any]:
        snapshot_cpu = time.process_time()
        counters = await self.side.counters()
        self.sampler_cpu += time.process_time() - snapshot_cpu
        cpu, now = common.cpu_seconds(), time.perf_counter()
        if self._profiler is not None:
            self._profiler.disable()
            self._profiler.dump_stats(self._begin["profile"])
            self._profiler = None
        self.probe.samples.stop()
        self.gc.stop()
        extra = self.side.window_ended()
        if self._sampler is not None:
            self._sampler.cancel()
        begin = self._begin
        return {
            "event": "metrics",
            "conns": len(self.side.conns) - counters["closed"],
            "window": now - begin["time"],
            "cpu": cpu - begin["cpu"],
            "sampler_cpu": self.sampler_cpu,
            "rss_idle": self.rss_idle,
            "rss_begin": begin["rss"],
            "rss_end": common.rss_bytes(),
            "counters": {k: counters[k] - begin["counters"][k] for k in counters},
            "lifetime": counters,
            "max_silence": self.max_silence if self.side.has_heartbeat else None,
            "bad_seen": self.bad_seen,
            "deadline_lateness": self._lateness(),
            "loop_lag": common.summary(self.probe.samples.values),
            "gc": self.gc.report(),
            "gc_count": [begin["gc_count"], gc.get_count()],
            "objects": [begin["objects"], len(gc.get_objects())],
            **extra,
        }

    def _lateness(self) -> dict[str, float] | None:
        samples = self.side.lateness
        if samples is None:
            return None
        return common.summary([max(0.0, value) for value in samples.values])

    async def _sample_forever(self) -> None:
        cursor = 0
        while True:
            await asyncio.sleep(1.0)
            conns = self.side.conns
            count = min(len(conns), self.side.sample_per_second)
            picked = [conns[(cursor + i) % len(conns)] for i in range(count)]
            cursor += count
            for start in range(0, count, self.side.slice):
                self._sample(picked[start : start + self.side.slice])
                await asyncio.sleep(0)

    def _sample(self, conns: Sequence[Any]) -> None:
        started = time.process_time()
        now = self.loop.time()
        inspect = self.side.inspect
        for conn in conns:
            silence, bad = inspect(conn, now)
            if silence is not None and silence > self.max_silence:
                self.max_silence = silence
            self.bad_seen += bad
        self.sampler_cpu += time.process_time() - started


async def worker_main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(args.max_lifetime, os._exit, 3)  # a bound, whatever happens upstream
    n = int(args.n)
    soft, hard = common.raise_nofile(n + 256)
    if soft < n + 64:
        raise RuntimeError(f"RLIMIT_NOFILE: hard limit {hard} is too low for {n} connections")
    side = SIDES[args.variant](loop, args.worker)
    ready: dict[str, Any] = {"nofile_soft": soft, "nofile_hard": hard}
    if args.worker == "server":
        ready["port"] = await side.start_server(args.host)
    await Worker(side, n).serve_commands(ready)


def run_worker(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when we stop
    try:
        with asyncio.Runner(loop_factory=common.loop_factory(args.loop)) as runner:
            runner.run(worker_main(args))
    except BaseException:
        common.emit({"event": "error", "error": traceback.format_exc()[-3000:]})
        os._exit(1)


# ================================================================= orchestrator: running


@dataclass(frozen=True)
class Spec:
    n: int
    variant: str
    loop: str
    run: int  #: index of the first window measured
    windows: int  #: windows measured back to back by this process pair


@dataclass(frozen=True)
class Options:
    window: float
    warmup: float
    batch: int
    optimize: bool  #: run the workers with ``python -O``
    quiet_wait: QuietWait  #: waits for other processes to calm down
    profile: Path | None  #: dump a cProfile of each server window here


_hosts = itertools.count()
_hosts_lock = threading.Lock()

#: Other processes using more than this much of one core make the machine "busy".
BUSY_PCT = 40.0


def next_host() -> str:
    """A fresh 127.0.0.x per measurement: no 4-tuple is reused while in TIME_WAIT."""
    with _hosts_lock:
        return f"127.0.0.{2 + next(_hosts) % 250}"


def worker_argv(role: str, spec: Spec, host: str, options: Options) -> list[str]:
    lifetime = 120 + options.warmup + spec.windows * (options.window + 5) + spec.n / 50
    return [
        sys.executable,
        *(["-O"] if options.optimize else []),
        __file__,
        *("--worker", role, "--variant", spec.variant, "--loop", spec.loop),
        *("--n", str(spec.n), "--host", host, "--max-lifetime", str(round(lifetime))),
    ]


class QuietWait:
    """Waits for other processes to calm down, within one budget for the whole run."""

    def __init__(self, budget: float) -> None:
        self._remaining = budget
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """Wait until others use < BUSY_PCT of a core (or the budget is spent); return it."""
        while True:
            busy = common.machine_busy_pct(0.5)
            with self._lock:
                if busy < BUSY_PCT or self._remaining <= 0:
                    return busy
                self._remaining -= 1.5
            time.sleep(1.0)


def measure(spec: Spec, options: Options) -> list[dict[str, Any]]:
    """Start both workers, connect, warm up, measure ``spec.windows`` windows, stop."""
    busy_before = options.quiet_wait()
    host = next_host()
    label = f"{spec.variant}/{spec.loop}/N={spec.n}"
    server = common.Child(worker_argv("server", spec, host, options), f"{label} server")
    client: common.Child | None = None
    try:
        ready = server.receive(timeout=30)
        client = common.Child(worker_argv("client", spec, host, options), f"{label} client")
        client.receive(timeout=30)
        connected, accepted = _connect(server, client, spec, host, ready["port"], options)
        for child in (server, client):
            child.request({"cmd": "heartbeat"}, timeout=30)
        time.sleep(options.warmup)
        windows = [
            _window(server, client, options, _profile_path(options, spec, index))
            for index in range(spec.windows)
        ]
    finally:
        if client is not None:
            client.stop()
        server.stop()
    common_fields = {
        "n": spec.n,
        "variant": spec.variant,
        "loop": spec.loop,
        "connected": connected,
        "accepted": accepted,
        "nofile_hard": ready["nofile_hard"],
        "busy_before": busy_before,
    }
    return [
        {
            **common_fields,
            "run": spec.run + index,
            "first": index == 0,
            "last": index == len(windows) - 1,
            **window,
        }
        for index, window in enumerate(windows)
    ]


def _connect(
    server: common.Child,
    client: common.Child,
    spec: Spec,
    host: str,
    port: int,
    options: Options,
) -> tuple[dict[str, Any], int]:
    """Open the N connections; raise unless all of them were opened and accepted."""
    timeout = 30 + spec.n / 100
    command = {"cmd": "connect", "host": host, "port": port, "n": spec.n}
    connected = client.request(
        {**command, "batch": options.batch, "timeout": timeout}, timeout=timeout + 30
    )
    if connected["ok"] < spec.n:
        errors = "; ".join(connected["errors"]) or "timed out"
        raise common.WorkerError(f"only {connected['ok']} of {spec.n} connected: {errors}")
    accepted = server.request({"cmd": "wait", "n": spec.n, "timeout": 20}, 40)["count"]
    if accepted < spec.n:
        raise common.WorkerError(f"the server has only {accepted} of {spec.n} connections")
    return connected, accepted


def _profile_path(options: Options, spec: Spec, index: int) -> str | None:
    if options.profile is None:
        return None
    options.profile.mkdir(parents=True, exist_ok=True)
    name = f"{spec.variant}-{spec.loop}-n{spec.n}-run{spec.run + index + 1}.pstats"
    return str(options.profile / name)


def _window(
    server: common.Child, client: common.Child, options: Options, profile: str | None
) -> dict[str, Any]:
    """Measure one window on both sides, and what other processes used meanwhile."""
    server.send({"cmd": "begin", "profile": profile})
    client.send({"cmd": "begin"})
    for child in (server, client):
        child.receive(timeout=60)
    busy = common.machine_busy_seconds()
    started = time.monotonic()
    time.sleep(options.window)
    busy = common.machine_busy_seconds() - busy
    elapsed = time.monotonic() - started
    for child in (server, client):
        child.send({"cmd": "end"})
    srv, cli = server.receive(timeout=60), client.receive(timeout=60)
    ours = srv["cpu"] / srv["window"] + cli["cpu"] / cli["window"]
    return {"server": srv, "client": cli, "others_pct": 100 * max(0.0, busy / elapsed - ours)}


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:300] if lines else "?"


def plan(
    ns: Sequence[int], variants: Sequence[str], loops: Sequence[str], runs: int, fresh: bool
) -> list[Spec]:
    """Default: one process pair measures all ``runs`` windows back to back. ``fresh``: a
    new pair per run, round by round (every variant and loop once per round)."""
    if not fresh:
        return [Spec(n, v, loop, 0, runs) for n in ns for loop in loops for v in variants]
    return [
        Spec(n, variant, loop, run, 1)
        for n in ns
        for run in range(runs)
        for loop in loops
        for variant in variants
    ]


def run_all(specs: Sequence[Spec], options: Options, parallel: int) -> list[dict[str, Any]]:
    """Measure every spec (``parallel`` at a time); a failure is recorded, not fatal."""

    def one(spec: Spec) -> list[dict[str, Any]]:
        started = time.monotonic()
        try:
            results = measure(spec, options)
            status = "ok"
        except common.WorkerError as error:
            results = [{**spec.__dict__, "error": str(error)}]
            status = "FAILED: " + _last_line(str(error))
        took = time.monotonic() - started
        runs = f"run {spec.run + 1}" + (f"-{spec.run + spec.windows}" if spec.windows > 1 else "")
        print(
            f"  {spec.variant:<10} {spec.loop:<7} N={spec.n:<6} {runs}: {took:5.1f} s  {status}",
            file=sys.stderr,
            flush=True,
        )
        return results

    if parallel <= 1:
        batches = [one(spec) for spec in specs]
    else:
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            batches = list(pool.map(one, specs))
    return [result for batch in batches for result in batch]


# ================================================================= orchestrator: report


def derive(result: dict[str, Any]) -> dict[str, Any]:
    """The table's numbers for one measurement."""
    srv, cli = result["server"], result["client"]
    n = max(1, min(srv["conns"], cli["conns"]))  # live at the end of the window
    window = (srv["window"] + cli["window"]) / 2
    srv_cpu = srv["cpu"] - srv["sampler_cpu"]
    cli_cpu = cli["cpu"] - cli["sampler_cpu"]
    sc, cc = srv["counters"], cli["counters"]
    exchanges = sc["pongs_received"] + cc["pongs_received"]
    per_conn_s = n * window
    return {
        "conns": min(srv["conns"], cli["conns"]),
        "others_pct": result["others_pct"],
        "cpu_pct": 100 * srv_cpu / srv["window"],
        "us_conn_s": 1e6 * srv_cpu / (n * srv["window"]),
        "us_exchange": 1e6 * (srv_cpu + cli_cpu) / exchanges if exchanges else math.nan,
        "pair_cpu": srv_cpu / srv["window"] + cli_cpu / cli["window"],
        "rss_kib": (srv["rss_begin"] - srv["rss_idle"]) / n / 1024,
        "cli_rss_kib": (cli["rss_begin"] - cli["rss_idle"]) / n / 1024,
        "exchanges": exchanges / per_conn_s,
        "srv_tx": sc["pings_sent"] / per_conn_s,
        "srv_rx": sc["pings_received"] / per_conn_s,
        "cli_tx": cc["pings_sent"] / per_conn_s,
        "cli_rx": cc["pings_received"] / per_conn_s,
        "silence_srv": _nan_if_none(srv["max_silence"]),
        "silence_cli": _nan_if_none(cli["max_silence"]),
        **_ms_summary("dl", srv["deadline_lateness"]),
        **_ms_summary("cdl", cli["deadline_lateness"]),
        **_ms_summary("lag", srv["loop_lag"]),
        **_ms_summary("clag", cli["loop_lag"]),
        "sched_max_ms": 1e3
        * _finite_max(
            srv.get("scheduler_max_lateness", math.nan), cli.get("scheduler_max_lateness", math.nan)
        ),
        **_deaths(result),
        "failed_connects": result["connected"]["failed"],
        "gen2": srv["gc"]["collections"][2],
        "gc_pause_ms": 1e3 * srv["gc"]["max_pause"],
        "gen2_pause_ms": 1e3 * max(srv["gc"]["max_pause_gen2"], cli["gc"]["max_pause_gen2"]),
        "objects_before": srv["objects"][0],
        "objects_after": srv["objects"][1],
        "gc_count_before": srv["gc_count"][0],
        "gc_count_after": srv["gc_count"][1],
    }


def _deaths(result: dict[str, Any]) -> dict[str, int]:
    """Losses in this window; the first window of a process pair adds those before it.

    Summed over the windows of a pair, ``lost``/``closed``/``suspects`` are therefore the
    pair's lifetime totals; ``*_window`` count only what happened while measuring.
    """
    out: dict[str, int] = {}
    for key in ("lost", "closed", "suspects"):
        window = sum(result[side]["counters"][key] for side in ("server", "client"))
        if key == "suspects":  # the sampler may see a suspicion the log missed, or vice versa
            window = max(window, result["server"]["bad_seen"] + result["client"]["bad_seen"])
        before = 0
        if result.get("first", True):
            for side in ("server", "client"):
                metrics = result[side]
                before += metrics["lifetime"][key] - metrics["counters"][key]
        out[key], out[key + "_window"] = before + window, window
    return out


def _finite_max(*values: float) -> float:
    """The largest finite value; NaN when there is none (max() keeps a leading NaN)."""
    finite = [value for value in values if math.isfinite(value)]
    return max(finite) if finite else math.nan


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def _ms_summary(prefix: str, summary: dict[str, float] | None) -> dict[str, float]:
    if summary is None:
        return {f"{prefix}_p50": math.nan, f"{prefix}_p99": math.nan, f"{prefix}_max": math.nan}
    return {f"{prefix}_{key}": 1e3 * summary[key] for key in ("p50", "p99", "max")}


#: Summed over runs instead of the median: a single false death must show.
SUMMED = (
    "lost",
    "closed",
    "suspects",
    "lost_window",
    "closed_window",
    "suspects_window",
    "failed_connects",
)
#: Worst over runs (for the targets), next to the median in the table.
WORST = (
    "dl_max",
    "cdl_max",
    "lag_max",
    "sched_max_ms",
    "gen2_pause_ms",
    "gc_pause_ms",
    "silence_srv",
    "silence_cli",
)


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs; SUMMED keys summed; ``worst_*`` for the WORST keys."""
    out: dict[str, Any] = {"runs": len(rows)}
    for key in rows[0]:
        values = [row[key] for row in rows]
        if key in SUMMED:
            out[key] = sum(values)
        elif isinstance(values[0], list):
            out[key] = values[len(values) // 2]
        else:
            out[key] = common.median(values)
    for key in WORST:
        finite = [row[key] for row in rows if math.isfinite(row[key])]
        out["worst_" + key] = max(finite) if finite else math.nan
    return out


def _f(value: float, digits: int = 1) -> str:
    return "—" if not math.isfinite(value) else f"{value:.{digits}f}"


def _triple(a: float, b: float, c: float, digits: int = 1) -> str:
    if not any(math.isfinite(v) for v in (a, b, c)):
        return "—"
    return f"{_f(a, digits)} / {_f(b, digits)} / {_f(c, digits)}"


def _count(value: int) -> str:
    return f"{value / 1000:.0f}k" if value >= 10_000 else str(value)


TABLE_HEADERS = (
    "variant",
    "loop",
    "conns",
    "srv CPU %",
    "srv µs/conn·s",
    "µs/exch (srv+cli)",
    "RSS KiB/conn",
    "exch/conn·s",
    "srv ping tx/rx",
    "cli ping tx/rx",
    "max silence s srv/cli",
    "deadline late ms p50/p99/max",
    "cli deadline ms p99/max",
    "loop lag ms p50/p99/max",
    "lost / closed [/ suspect]",
    "gen2 GCs / max pause ms",
    "gc objects before→after",
    "others' CPU %",
)


def table_row(variant: str, loop: str, a: dict[str, Any]) -> list[str]:
    return [
        LABELS[variant],
        loop,
        f"{a['conns']:.0f}",
        _f(a["cpu_pct"]),
        _f(a["us_conn_s"], 2),
        _f(a["us_exchange"]),
        _f(a["rss_kib"], 2),
        _f(a["exchanges"], 2),
        f"{_f(a['srv_tx'], 2)}/{_f(a['srv_rx'], 2)}",
        f"{_f(a['cli_tx'], 2)}/{_f(a['cli_rx'], 2)}",
        f"{_f(a['silence_srv'], 2)}/{_f(a['silence_cli'], 2)}",
        _triple(a["dl_p50"], a["dl_p99"], a["dl_max"]),
        "—" if not math.isfinite(a["cdl_p99"]) else f"{_f(a['cdl_p99'])} / {_f(a['cdl_max'])}",
        _triple(a["lag_p50"], a["lag_p99"], a["lag_max"]),
        _losses(a),
        f"{a['gen2']:.0f} / {_f(a['gc_pause_ms'])}",
        f"{_count(int(a['objects_before']))}→{_count(int(a['objects_after']))}",
        _f(a["others_pct"], 0),
    ]


def _losses(a: dict[str, Any]) -> str:
    """``lost / closed[, suspect]``, then how many of them happened inside the windows."""
    keys = ("lost", "closed", "suspects") if a["suspects"] else ("lost", "closed")
    total = " / ".join(str(a[key]) for key in keys)
    if not any(a[key] for key in keys):
        return total
    in_windows = " / ".join(str(a[key + "_window"]) for key in keys)
    return f"{total} ({in_windows} in windows)"


def gc_detail_row(variant: str, loop: str, a: dict[str, Any]) -> list[str]:
    return [
        LABELS[variant],
        loop,
        str(tuple(a["gc_count_before"])),
        str(tuple(a["gc_count_after"])),
        f"{a['objects_before']:.0f}",
        f"{a['objects_after']:.0f}",
        _f(a["gen2_pause_ms"]),
        _f(a["worst_gen2_pause_ms"]),
        _f(a["cli_rss_kib"], 2),
        _f(a["worst_dl_max"]),
        _f(a["worst_lag_max"]),
    ]


GC_HEADERS = (
    "variant",
    "loop",
    "srv gc.get_count() before",
    "after",
    "srv gc objects before",
    "after",
    "gen2 pause ms (median, both sides)",
    "gen2 pause ms (worst run)",
    "cli RSS KiB/conn",
    "deadline late max ms (worst run)",
    "loop lag max ms (worst run)",
)


Grouped = dict[tuple[int, str, str], list[dict[str, Any]]]


def group(results: Sequence[dict[str, Any]]) -> Grouped:
    groups: Grouped = {}
    for result in results:
        if "error" not in result:
            key = (result["n"], result["variant"], result["loop"])
            groups.setdefault(key, []).append(result)
    return groups


def tables(
    groups: Grouped, ns: Sequence[int], variants: Sequence[str], loops: Sequence[str]
) -> str:
    parts: list[str] = []
    for n in ns:
        rows, gc_rows = [], []
        for variant in variants:
            for loop in loops:
                measured = groups.get((n, variant, loop))
                if not measured:
                    rows.append([LABELS[variant], loop, "failed", *[""] * 14])
                    continue
                a = aggregate([derive(r) for r in measured])
                rows.append(table_row(variant, loop, a))
                gc_rows.append(gc_detail_row(variant, loop, a))
        parts += [f"### N = {n:,}", "", common.markdown_table(TABLE_HEADERS, rows), ""]
        parts += [f"GC and worst-run detail, N = {n:,}:", ""]
        parts += [common.markdown_table(GC_HEADERS, gc_rows), ""]
    return "\n".join(parts)


def ratios(
    groups: Grouped, ns: Sequence[int], loops: Sequence[str]
) -> dict[tuple[int, str], dict[str, Any]]:
    """pulsewire against the baselines, measured in the same round; median over rounds."""
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for n in ns:
        for loop in loops:
            by_run: dict[str, dict[int, dict[str, Any]]] = {}
            for variant in VARIANTS:
                for result in groups.get((n, variant, loop), []):
                    by_run.setdefault(variant, {})[result["run"]] = derive(result)
            out[(n, loop)] = _round_ratios(by_run)
    return out


def _round_ratios(by_run: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Ratios (and one difference) of pulsewire to a baseline measured in the same run."""
    comparisons = (
        ("cpu_vs_tasks", "tasks", "us_conn_s", False),
        ("cpu_vs_floor", "floor", "us_conn_s", False),
        ("exch_vs_floor", "floor", "us_exchange", False),
        ("pair_vs_floor", "floor", "pair_cpu", False),
        ("rss_over_none_kib", "none", "rss_kib", True),
    )
    found: dict[str, tuple[float, list[float]]] = {}
    for name, baseline, key, difference in comparisons:
        values = []
        for run, pw in by_run.get("pulsewire", {}).items():
            base = by_run.get(baseline, {}).get(run)
            if base is None or not math.isfinite(base[key]):
                continue
            if difference:
                values.append(pw[key] - base[key])
            elif base[key] > 0:
                values.append(pw[key] / base[key])
        if values:
            found[name] = (common.median(values), values)
    return found


def ratio_lines(found: dict[tuple[int, str], dict[str, Any]]) -> str:
    names = {
        "cpu_vs_tasks": "server CPU per connection, pulsewire / per-task heartbeat",
        "cpu_vs_floor": "server CPU per connection, pulsewire / Protocol+ticker floor",
        "exch_vs_floor": "CPU per exchange (srv+cli), pulsewire / floor",
        "pair_vs_floor": "CPU of both processes, pulsewire / floor",
        "rss_over_none_kib": "RSS/conn, pulsewire - no heartbeat (KiB)",
    }
    lines = []
    for (n, loop), values in found.items():
        for key, title in names.items():
            if key in values:
                med, each = values[key]
                runs = ", ".join(f"{v:.2f}" for v in each)
                lines.append(f"- N={n:,} {loop}: {title}: **{med:.2f}** (per round: {runs})")
    return "\n".join(lines)


def targets(
    groups: Grouped, found: dict[tuple[int, str], dict[str, Any]], loops: Sequence[str]
) -> str:
    """Pass/fail of each target, at the largest N measured."""
    n = max((key[0] for key in groups), default=0)
    lines = [f"Targets, evaluated at N = {n:,} (medians over runs unless noted):", ""]
    for loop in loops:
        pw = groups.get((n, "pulsewire", loop))
        if not pw:
            lines.append(f"- {loop}: pulsewire not measured")
            continue
        a = aggregate([derive(r) for r in pw])
        ratio = found.get((n, loop), {})
        lines += [f"- **{loop}**:", *("  " + line for line in _target_lines(a, ratio, n))]
    return "\n".join(lines)


def _target_lines(a: dict[str, Any], ratio: dict[str, Any], n: int) -> list[str]:
    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    def get(name: str) -> float:
        return ratio[name][0] if name in ratio else math.nan

    deaths_ok = a["lost"] == 0 and a["closed"] == 0 and a["suspects"] == 0 and a["conns"] >= n
    # A side that fires no timer (a pulsewire server while its clients lead) has no
    # lateness: the other side's counts, not a NaN that max() would pass along.
    p99 = _finite_max(a["dl_p99"], a["cdl_p99"])
    worst = _finite_max(a["worst_dl_max"], a["worst_cdl_max"], a["worst_sched_max_ms"])
    checks = [
        (
            f"{n:,} idle connections held, zero false deaths/suspects over {a['runs']} runs "
            f"(conns {a['conns']:.0f}, lost {a['lost']}, closed {a['closed']}, "
            f"suspect {a['suspects']})",
            deaths_ok,
        ),
        (
            f"idle CPU ≤ 0.5x per-task heartbeat: {get('cpu_vs_tasks'):.2f}x",
            _le(get("cpu_vs_tasks"), 0.5),
        ),
        (
            f"RSS/conn ≤ no-heartbeat + 2 KiB: {get('rss_over_none_kib'):+.2f} KiB",
            _le(get("rss_over_none_kib"), 2.0),
        ),
        (
            f"CPU per PING/PONG exchange ≤ 1.2x floor: {get('exch_vs_floor'):.2f}x",
            _le(get("exch_vs_floor"), 1.2),
        ),
        (f"deadline lateness p99 ≤ 20 ms: {p99:.1f} ms (worse side)", _le(p99, 20)),
        (
            f"deadline lateness max ≤ 100 ms: {worst:.1f} ms (worst run, either side)",
            _le(worst, 100),
        ),
        (
            f"no full-collection pause > 50 ms: {a['worst_gen2_pause_ms']:.1f} ms (worst run, "
            "either side)",
            _le(a["worst_gen2_pause_ms"], 50.0, missing_ok=True),
        ),
    ]
    return [f"- {verdict(ok)}: {text}" for text, ok in checks]


def _le(value: float, limit: float, missing_ok: bool = False) -> bool | None:
    if not math.isfinite(value):
        return True if missing_ok else None
    return value <= limit


def log_event_lines(groups: Grouped) -> str:
    """pulsewire's own warnings (deaths, suspicions, late timers), summed over processes."""
    lines = []
    for (n, variant, loop), results in sorted(groups.items()):
        totals: Counter[str] = Counter()
        for result in results:
            if result.get("last", True):
                for side in ("server", "client"):
                    totals.update(result[side].get("log_counts", {}))
        interesting = {
            k: v for k, v in sorted(totals.items()) if k.split(":")[0] in _LOGGED_TROUBLE
        }
        if variant == "pulsewire":
            lines.append(f"- N={n:,} {loop}: {interesting or 'none'}")
    return "\n".join(lines)


_LOGGED_TROUBLE = ("peer.dead", "peer.suspect", "peer.recovered", "scheduler.late", "handler.error")


def _policy_text() -> str:
    try:
        return repr(pulsewire_policy())
    except ImportError:
        return "(pulsewire not installed)"


def report(
    results: Sequence[dict[str, Any]],
    args: argparse.Namespace,
    command: Sequence[str],
    started: datetime,
    elapsed: float,
) -> str:
    """The markdown for RESULTS.md: run facts, a table per N, ratios, targets, warnings."""
    ns, variants, loops = _ns(args), _variants(args), _loops(args)
    groups = group(results)
    found = ratios(groups, ns, loops)
    failures = [r for r in results if "error" in r]
    hard = next((r["nofile_hard"] for r in results if "nofile_hard" in r), "?")
    info = common.versions()
    parts = [
        f"Run {started:%Y-%m-%d %H:%M} UTC on `nproc` = {os.cpu_count()}, "
        f"Python {info['python']}, pulsewire {info['pulsewire']} ({args.revision}), "
        f"uvloop {info['uvloop']}, "
        f"websockets {info['websockets']}, msgspec {info['msgspec']}; RLIMIT_NOFILE hard "
        f"limit {hard} (each side holds N sockets in its own process).",
        "",
        f"Command: `python benchmarks/bench_idle.py {' '.join(command)}` — "
        f"{args.runs} window(s) of {args.window} s after {args.warmup} s warm-up, "
        + ("a new process pair per run" if args.fresh else "back to back in one process pair")
        + f", medians shown (lost/closed: totals); took {elapsed / 60:.1f} min."
        + (" Workers ran with `python -O` (asserts off)." if args.optimize else ""),
        "",
        f"Heartbeat 1 s everywhere. pulsewire: `{_policy_text()}`. Baselines time out "
        "after 3 s; websockets `ping_timeout=20`, `compression=None`. CPU excludes the "
        "once-a-second evidence sampler; µs/exch = (server + client CPU) / PONGs received. "
        "Deadline lateness is on the loop clock (1 ms resolution on uvloop); loop lag is a "
        "10 ms `call_later` probe on `perf_counter`; others' CPU is what the rest of the "
        "machine used during the window (% of one core). See the module docstring.",
        "",
        tables(groups, ns, variants, loops),
        "Ratios (each round compares measurements taken back to back):",
        "",
        ratio_lines(found) or "- (pulsewire or a baseline was not measured)",
        "",
        targets(groups, found, loops),
        "",
        "pulsewire warnings logged over each process's life (connect and warm-up included):",
        "",
        log_event_lines(groups),
    ]
    if failures:
        parts += ["", "Failed measurements:", ""]
        parts += [
            f"- {r['variant']}/{r['loop']}/N={r['n']}: {_last_line(r['error'])}" for r in failures
        ]
    return "\n".join(parts) + "\n"


# ================================================================= command line


def profile_summary(directory: Path, top: int = 25) -> str:
    """The top functions by own time of every profiled server window."""
    parts = []
    for path in sorted(directory.glob("*.pstats")):
        stream = io.StringIO()
        stats = pstats.Stats(str(path), stream=stream)
        stats.sort_stats(pstats.SortKey.TIME).print_stats(top)
        parts += [f"### {path.name}", "", "```", stream.getvalue().strip(), "```", ""]
    return "\n".join(parts)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="1000,10000", help="connection counts, comma-separated")
    parser.add_argument("--window", type=float, default=4.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds after connecting")
    parser.add_argument("--runs", type=int, default=3, help="runs per row (median shown)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=",".join(VARIANTS))
    parser.add_argument("--loops", default=",".join(LOOPS), help="asyncio,uvloop")
    parser.add_argument("--batch", type=int, default=200, help="concurrent connects")
    parser.add_argument("--fresh", action="store_true", help="new processes for every run")
    parser.add_argument(
        "-O",
        "--optimize",
        action="store_true",
        help="run the workers with python -O (asserts off)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="seconds, in all, to wait before process pairs for other load to drop",
    )
    parser.add_argument(
        "--profile", type=Path, help="cProfile each server window into this directory"
    )
    parser.add_argument("--parallel", type=int, default=1, help="measurements at once")
    parser.add_argument("--smoke", action="store_true", help="N=50, 2 s, asyncio, parallel")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--json", type=Path, help="also save the raw measurements here")
    parser.add_argument(
        "--from-json", type=Path, help="measure nothing: report a run saved with --json"
    )
    worker = parser.add_argument_group("internal (worker processes)")
    worker.add_argument("--worker", choices=("server", "client"), help=argparse.SUPPRESS)
    worker.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    worker.add_argument("--loop", choices=LOOPS, help=argparse.SUPPRESS)
    worker.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    worker.add_argument("--max-lifetime", type=float, default=600, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.window, args.warmup, args.runs = "50", 2.0, 1.0, 1
        args.loops, args.parallel, args.no_write = "asyncio", len(VARIANTS), True
        args.quiet_wait = 0.0  # the variants run side by side: they are the load
    return args


def _split(text: str, allowed: Iterable[str] | None = None) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if allowed is not None:
        unknown = set(items) - set(allowed)
        if unknown:
            raise SystemExit(f"unknown: {', '.join(sorted(unknown))}")
    return items


def smoke_problems(results: Sequence[dict[str, Any]]) -> list[str]:
    """What makes a smoke run fail: a failed measurement, a death, or no heartbeats."""
    problems = [f"{r['variant']}: {_last_line(r['error'])}" for r in results if "error" in r]
    for result in results:
        if "error" in result:
            continue
        d = derive(result)
        if d["lost"] or d["closed"] or d["suspects"] or d["failed_connects"]:
            problems.append(f"{result['variant']}: connections lost/closed/suspect/failed")
        if result["variant"] in HEARTBEAT_VARIANTS and not d["exchanges"] > 0:
            problems.append(f"{result['variant']}: no heartbeat exchanged")
    return problems


def measure_all(args: argparse.Namespace) -> tuple[list[dict[str, Any]], float]:
    """Run every planned measurement; return the results and the seconds it took."""
    specs = plan(_ns(args), _variants(args), _loops(args), args.runs, args.fresh)
    options = Options(
        window=args.window,
        warmup=args.warmup,
        batch=args.batch,
        optimize=args.optimize,
        quiet_wait=QuietWait(args.quiet_wait),
        profile=args.profile,
    )
    print(f"bench_idle: {len(specs)} measurements", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        results = run_all(specs, options, args.parallel)
    finally:
        common.kill_children()
    return results, time.monotonic() - started


def _ns(args: argparse.Namespace) -> list[int]:
    return [int(n) for n in _split(args.n)]


def _variants(args: argparse.Namespace) -> list[str]:
    return _split(args.variants, VARIANTS)


def _loops(args: argparse.Namespace) -> list[str]:
    return _split(args.loops, LOOPS)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    if args.from_json is not None:  # re-render a saved run, measure nothing
        saved = json.loads(args.from_json.read_text())
        command, results, elapsed = saved["argv"], saved["results"], saved["elapsed"]
        started = datetime.fromisoformat(saved["started"])
        run_args = parse_args(command)
        run_args.revision = saved.get("revision", "revision unknown")
    else:
        common.install_cleanup()
        command = list(sys.argv[1:] if argv is None else argv)
        run_args, started = args, datetime.now(UTC)
        args.revision = common.git_revision(Path(__file__).parent, "src")
        results, elapsed = measure_all(args)
    text = report(results, run_args, command, started, elapsed)
    print(text)
    if args.json:
        saved = {
            "argv": command,
            "started": started.isoformat(),
            "revision": run_args.revision,
            "elapsed": elapsed,
            "results": results,
        }
        args.json.write_text(json.dumps(saved, indent=1, default=str))
    if args.profile is not None:
        print(profile_summary(args.profile))
    elif not args.no_write:  # profiled windows are slower: they do not go into RESULTS.md
        common.replace_section(args.results, "bench_idle", text, RESULTS_HEADER)
    problems = (
        smoke_problems(results)
        if args.smoke
        else [f"{r['variant']}/{r['loop']}/N={r['n']}" for r in results if "error" in r]
    )
    for problem in problems:
        print("problem:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
