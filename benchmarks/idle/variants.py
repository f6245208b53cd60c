"""The sides bench_idle measures: one process's half of each variant.

Every variant holds the same N connections over loopback with a 1 s heartbeat and a 3 s
timeout (``none``: no heartbeat); the worker (:mod:`idle.worker`) measures whichever side
it holds. A side keeps its connections in ``conns``, counts PINGs and PONGs, and says
how long each connection has been silent (:meth:`Side.inspect`).

:class:`PulsewireSide` uses pulsewire's public API only (``serve``, ``connect``,
``Policy``, ``Server``, ``State``, ``Connection.stats()``/``death``,
``Listener.connections``/``stats()``), plus, for deadline lateness, the loop-wide
scheduler's ``on_fire`` hook and ``max_lateness`` read through ``getattr``: it must run
unchanged against another build of pulsewire (``bench_idle.py --compare``), and a build
without them reports no lateness instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections import Counter
from collections.abc import Coroutine, MutableMapping
from typing import Any, Never

import _common as common

INTERVAL = 1.0  #: heartbeat interval of every variant
TIMEOUT = 3.0  #: silence after which a side declares its peer dead
WS_PING_TIMEOUT = 20.0
PING, PONG = 1, 2
FRAME = struct.Struct("!BQ")  #: the baselines' 9-byte PING/PONG: kind, sequence number
FRAME_SIZE = FRAME.size
BACKLOG = 1024
SLICE = 256  #: connections read per turn of the loop when a side walks all of them


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
        """(silence in seconds, None if closed or unknown; whether it is SUSPECT)."""
        return None, False

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
        """Side-specific figures for the window's report."""
        if self.lateness is not None:
            self.lateness.stop()
        return {}

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# ---------------------------------------------------------------- none: streams, no heartbeat


class NoHeartbeatSide(Side):
    """Streams, connections just held: the memory baseline."""

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


# ---------------------------------------------------------------- tasks: a task per heartbeat


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

    Each heartbeat task sleeps 1 s, writes a 9-byte PING and drains; the reader answers
    PONG; a side that hears no PONG for 3 s closes the connection and counts it as lost.
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


# ---------------------------------------------------------------- floor: Protocol + one ticker


_FLOOR_BUFFER = bytearray(4096)
_FLOOR_VIEW = memoryview(_FLOOR_BUFFER)
_FLOOR_PING = FRAME.pack(PING, 0)


class FloorProtocol(asyncio.BufferedProtocol):
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
    """Protocol + one loop-wide ticker: the cheapest pure-Python heartbeat.

    The client's ``call_at`` ticker pings a 1/100th bucket of the connections every 10 ms
    and counts a connection silent for 3 s as lost; the server only answers.
    """

    BUCKETS = 100

    def __init__(self, loop: asyncio.AbstractEventLoop, role: str) -> None:
        super().__init__(loop, role)
        self._buckets: list[list[FloorProtocol]] = [[] for _ in range(self.BUCKETS)]
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
            lambda: FloorProtocol(self), host, 0, backlog=BACKLOG
        )
        self._server = server
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def open_one(self, host: str, port: int) -> None:
        await self.loop.create_connection(lambda: FloorProtocol(self), host, port)

    def inspect(self, conn: Any, now: float) -> tuple[float | None, bool]:
        return (None if conn.transport is None else now - conn.last_rx), False

    def connection_made(self, protocol: FloorProtocol) -> None:
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
        gone: list[FloorProtocol] = []
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


# ---------------------------------------------------------------- websockets


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
    """websockets' asyncio implementation with its own keepalive.

    ``ping_interval=1, ping_timeout=20, compression=None`` (permessage-deflate would add
    ~40 KiB/connection of zlib state). Connections are opened with keepalive off and it is
    switched on (spread over one interval) once all are open: with it on, the keepalive of
    the open connections starves the handshakes and opening 10,000 takes over a minute.
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


# ---------------------------------------------------------------- pulsewire


def pulsewire_policy() -> Any:
    """The policy both pulsewire sides use: 1 s heartbeat, 3 s timeout, other defaults."""
    import pulsewire

    return pulsewire.Policy(interval=INTERVAL, timeout=TIMEOUT)


class PulsewireSide(Side):
    """pulsewire on both sides, through its public API (see the module docstring).

    The server is ``pulsewire.serve`` with a ``Server`` that overrides no hook. Deaths come
    from ``Connection.death`` (client) and ``Listener.stats()`` (server); suspicions from
    the sampler and from ``peer.suspect`` log events (structlog is configured to count and
    drop events); lateness from the scheduler's ``on_fire`` hook where the build has one.
    """

    # ``stats()`` builds a full snapshot (RTT percentiles included): tens of µs apiece.
    sample_per_second = 500
    slice = 64

    def __init__(self, loop: asyncio.AbstractEventLoop, role: str) -> None:
        super().__init__(loop, role)
        self.log_counts: Counter[str] = Counter()
        _count_structlog_events(self.log_counts)
        self.policy = pulsewire_policy()
        self.scheduler = _loop_scheduler(loop)
        if hasattr(self.scheduler, "on_fire"):
            self.lateness = common.Samples()
            self._chain_on_fire(self.lateness)
        self._listener: Any = None

    def _chain_on_fire(self, lateness: common.Samples) -> None:
        previous = self.scheduler.on_fire

        def on_fire(*args: float) -> None:
            # The hook's signature has changed before: lateness is its last argument.
            lateness.add(args[-1])
            if previous is not None:
                previous(*args)

        self.scheduler.on_fire = on_fire

    async def start_server(self, host: str) -> int:
        import pulsewire

        class Hooks(pulsewire.Server):
            """Only the default no-op hooks: an idle connection costs no task."""

        self._listener = await pulsewire.serve(
            Hooks(), host, 0, policy=self.policy, backlog=BACKLOG
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
            return None, False  # deaths are counted apart
        return stats.silence, stats.state is State.SUSPECT

    async def counters(self) -> dict[str, int]:
        totals = {"pings_sent": 0, "pings_received": 0, "pongs_received": 0}
        client_deaths: Counter[str] = Counter()
        for start in range(0, len(self.conns), self.slice):
            for conn in self.conns[start : start + self.slice]:
                stats = conn.stats()
                totals["pings_sent"] += stats.pings_sent
                totals["pings_received"] += stats.pings_received
                totals["pongs_received"] += stats.pongs_received
                if conn.death is not None:
                    client_deaths[conn.death.reason.value] += 1
            await asyncio.sleep(0)
        # A server's dead connections leave ``Listener.connections``: its own count has them.
        deaths = client_deaths if self._listener is None else self._listener.stats().deaths
        return {
            **totals,
            "lost": deaths.get("timeout", 0),
            "closed": sum(deaths.values()),
            "suspects": self.log_counts["peer.suspect"],
        }

    def window_started(self) -> None:
        super().window_started()
        if hasattr(self.scheduler, "max_lateness"):
            self.scheduler.max_lateness = 0.0

    def window_ended(self) -> dict[str, Any]:
        super().window_ended()
        return {
            "scheduler_max_lateness": getattr(self.scheduler, "max_lateness", None),
            "log_counts": dict(self.log_counts),
        }


class AutoSide(PulsewireSide):
    """pulsewire with ``Policy.auto()`` on both sides (adaptive, 1 s pings): the recommended
    policy's idle cost, against ``Policy()``'s in the same rounds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, role: str) -> None:
        super().__init__(loop, role)
        import pulsewire

        self.policy = pulsewire.Policy.auto()


class AnyioSide(PulsewireSide):
    """pulsewire's anyio driver on the asyncio loop, through ``pulsewire.anyio``'s API.

    The same policy, counters and inspection as :class:`PulsewireSide` (``stats()``,
    ``death``, ``Listener.connections``/``stats()``); the server is a
    ``pulsewire.anyio.Listener`` over ``anyio.create_tcp_listener`` with a ``Server`` that
    overrides no hook, and each client connection lives in a task that holds its
    ``connect()`` block open. No loop-wide scheduler: no deadline lateness.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, role: str) -> None:
        Side.__init__(self, loop, role)
        self.log_counts = Counter()
        _count_structlog_events(self.log_counts)
        self.policy = pulsewire_policy()
        self.scheduler = None
        self._listener = None

    async def start_server(self, host: str) -> int:
        import anyio

        import pulsewire.anyio

        class Hooks(pulsewire.anyio.Server):
            """Only the default no-op hooks."""

        inner = await anyio.create_tcp_listener(local_host=host, local_port=0, backlog=BACKLOG)
        self._listener = pulsewire.anyio.Listener(inner, policy=self.policy)
        self.spawn(self._listener.serve(Hooks()))
        port: int = self._listener.port
        return port

    async def open_one(self, host: str, port: int) -> None:
        opened: asyncio.Future[Any] = self.loop.create_future()
        self.spawn(self._hold(host, port, opened))
        self.conns.append(await opened)

    async def _hold(self, host: str, port: int, opened: asyncio.Future[Any]) -> None:
        import pulsewire.anyio

        try:
            async with pulsewire.anyio.connect(host, port, policy=self.policy) as connection:
                opened.set_result(connection)
                await connection.wait_dead()
        except Exception as error:
            if not opened.done():
                opened.set_exception(error)

    def window_started(self) -> None:
        Side.window_started(self)

    def window_ended(self) -> dict[str, Any]:
        Side.window_ended(self)
        return {"scheduler_max_lateness": None, "log_counts": dict(self.log_counts)}


def _loop_scheduler(loop: asyncio.AbstractEventLoop) -> Any:
    """pulsewire's loop-wide scheduler, or None for a build without ``scheduler_for``."""
    try:
        from pulsewire.asyncio.scheduler import scheduler_for
    except ImportError:
        return None
    return scheduler_for(loop)


def _count_structlog_events(counts: Counter[str]) -> None:
    """Count pulsewire's log events by name and drop them (this is the application).

    Builds that hand their events to the ``logging`` logger ``pulsewire`` are counted by a
    handler there; older builds, which logged through structlog's configuration, by a
    structlog processor.
    """
    import logging

    import structlog

    def tally(event_dict: MutableMapping[str, Any]) -> None:
        event = str(event_dict.get("event"))
        reason = event_dict.get("reason")
        counts[event if reason is None else f"{event}:{reason}"] += 1

    def count(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Never:
        tally(event_dict)
        raise structlog.DropEvent

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if isinstance(record.msg, dict):
                tally(record.msg)

    structlog.configure(
        processors=[count],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    logger = logging.getLogger("pulsewire")
    logger.addHandler(Count())
    logger.setLevel(logging.INFO)
    logger.propagate = False


SIDES: dict[str, type[Side]] = {
    "none": NoHeartbeatSide,
    "tasks": TasksSide,
    "floor": FloorSide,
    "websockets": WebsocketsSide,
    "pulsewire": PulsewireSide,
    "auto": AutoSide,
    "anyio": AnyioSide,
}
LABELS = {
    "none": "no heartbeat (streams)",
    "tasks": "per-task heartbeat (streams)",
    "floor": "Protocol + ticker (floor)",
    "websockets": "websockets",
    "pulsewire": "pulsewire",
    "pulsewire@auto": "pulsewire Policy.auto()",
    "anyio": "pulsewire.anyio (asyncio)",
}
