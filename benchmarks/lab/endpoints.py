"""The fault lab's endpoints: processes that hold connections and say, in JSON lines, how they end.

Shared by ``benchmarks/detection.py`` and the fault tests (``tests/faults``), which import
it as ``lab.endpoints`` with ``benchmarks/`` on ``sys.path``. Meant to run inside the hosts
of :class:`~pulsewire.cli.netns.TwoHosts` (anywhere works), one process per side, run by
its path::

    python benchmarks/lab/endpoints.py serve '<Plan as JSON>'   # on the peer's host
    python benchmarks/lab/endpoints.py watch '<Plan as JSON>'   # on the observer's host

A :class:`Plan` lists :class:`Endpoint`\\ s, each of one of three kinds, so that pulsewire
and the usual alternatives face the same fault at the same moment:

- ``pulsewire``: :func:`pulsewire.serve` / :func:`pulsewire.connect` with ``policy`` and
  ``socket_options``;
- ``tcp``: a plain TCP socket with, optionally, kernel keepalive (``keepalive`` =
  ``(TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT)``, whole seconds) and ``TCP_USER_TIMEOUT``
  (``user_timeout``), set with plain ``setsockopt`` (not pulsewire's own kernel module, so
  the baseline does not depend on the code under test);
- ``websockets``: the ``websockets`` library's asyncio API (``pip install websockets``),
  with its ``ping_interval``, ``ping_timeout`` and ``close_timeout``.

``serve`` listens on ``plan.host`` (one port per endpoint, ``port`` 0 = any) and echoes
every message back; ``watch`` opens ``connections`` connections to each endpoint's
``port`` and, with ``write_every``, sends a small message on each that often. Both print,
one JSON object per line, each with an ``"event"`` key:

- ``ready``: ``serve``: ``{"ports": {name: port}}``; ``watch``: once every connection is
  open, with each socket's ``TCP_USER_TIMEOUT`` and ``TCP_RTO_MAX_MS`` as read back
  (``user_timeout_ms``, ``rto_max_ms``: None where the kernel lacks the option);
- ``dead``: a connection ended: ``endpoint``, ``conn`` (its index), ``at``
  (``time.monotonic()``, which every process on the machine shares), ``reason``
  (``timeout``, ``reset``, ``eof``, ``unreachable``, or pulsewire's own reason),
  ``source`` (``heartbeat``: the endpoint's own liveness check; ``kernel``: an error or
  end of stream from the socket; ``peer``: a close frame), ``silence`` (pulsewire: seconds
  without evidence at the verdict) and ``detail``;
- ``received``: ``serve`` got a probe message (see ``echo`` below), so a test can tell "the
  request never arrived" from "the answer was lost";
- ``echoed`` / ``stats``: answers to the commands below; ``error``: a failure, then exit 1.

Commands, one JSON object per line on stdin: ``{"cmd": "echo", "id": N, "timeout": s}``
sends a probe on every open connection (of ``endpoint`` only, if given) and reports which
came back within ``timeout``; ``{"cmd": "stats", "id": N}`` reports per-connection
figures (pulsewire's :class:`~pulsewire.SessionStats`, websockets' latency, and the
kernel's ``TCP_INFO`` RTT and retransmissions for every kind); ``{"cmd": "quit"}``.
The process ends at end of input, or by a signal (a SIGTERM kills it at once: its kernel
then closes every socket with a FIN, as an application exiting without closing would; or,
RFC 1122 4.2.2.13, with an RST where bytes had arrived unread, such as a PING that came in
the instant before: rare, and the observer then reports a reset, which is what it got).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import json
import logging
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

import pulsewire
from pulsewire import Policy, SocketOptions
from pulsewire.cli.netns import HostProcess, TwoHosts
from pulsewire.kernel import LINUX_TCP_RTO_MAX_MS

__all__ = ["Endpoint", "Kind", "Plan", "Running", "main", "serve_and_watch"]

Kind = Literal["pulsewire", "tcp", "websockets"]

#: Probe messages start with this byte; everything else is filler from ``write_every``.
PROBE: Final = b"E"
FILLER: Final = b"W"
#: Opening connections is bounded by this many seconds.
OPEN_TIMEOUT: Final = 15.0
#: This file: the endpoints run as a program, by path.
SCRIPT: Final = Path(__file__).resolve()

# Offsets in Linux's struct tcp_info (<linux/tcp.h>): tcpi_rto, tcpi_rtt, tcpi_total_retrans.
_TCP_INFO_RTO: Final = 8
_TCP_INFO_RTT: Final = 68
_TCP_INFO_TOTAL_RETRANS: Final = 100
_TCP_INFO_SIZE: Final = 104
#: ``TCP_THIN_LINEAR_TIMEOUTS`` in <linux/tcp.h> (the socket module lacks the name).
_TCP_THIN_LINEAR_TIMEOUTS: Final = 16


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """One service (``serve``) or one set of connections to a service (``watch``)."""

    name: str
    kind: Kind
    port: int = 0  #: serve: the port to listen on (0: any); watch: the port to connect to
    connections: int = 1  #: watch: how many connections to open
    write_every: float | None = None  #: watch: send a small message this often, seconds
    policy: Policy | None = None  #: pulsewire (default ``Policy()``)
    socket_options: SocketOptions | None = None  #: pulsewire (default ``SocketOptions()``)
    keepalive: tuple[int, int, int] | None = None  #: tcp: idle, interval, count
    user_timeout: float | None = None  #: tcp: TCP_USER_TIMEOUT, seconds
    ping_interval: float | None = None  #: websockets (None: no pings)
    ping_timeout: float | None = None  #: websockets
    close_timeout: float | None = 10.0  #: websockets (its own default)


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """What one endpoints process does: listen on or connect to ``host``."""

    host: str
    endpoints: tuple[Endpoint, ...]

    def to_json(self) -> str:
        return msgspec.json.encode(self).decode()


def emit(event: str, **fields: Any) -> None:
    """Print one JSON line; stdout belongs to the protocol, so nothing else may print."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------- classifying


_RESET: Final = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ECONNREFUSED}
_UNREACHABLE: Final = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


def classify(error: BaseException | None) -> tuple[str, str]:
    """(reason, source) for an error the socket reported (``None``: end of stream).

    Written independently of pulsewire's own mapping, which is part of what is tested.
    """
    if error is None:
        return "eof", "kernel"
    code = getattr(error, "errno", None)
    if code == errno.ETIMEDOUT or isinstance(error, TimeoutError):
        return "timeout", "kernel"
    if code in _RESET or isinstance(error, ConnectionResetError | BrokenPipeError):
        return "reset", "kernel"
    if code in _UNREACHABLE:
        return "unreachable", "kernel"
    if isinstance(error, asyncio.IncompleteReadError):
        return "eof", "kernel"
    return f"error:{type(error).__name__}", "kernel"


def _rto_max_ms(sock: Any) -> int | None:
    """``TCP_RTO_MAX_MS`` as read back; None where the kernel lacks it (before 6.15)."""
    try:
        value: int = sock.getsockopt(socket.IPPROTO_TCP, LINUX_TCP_RTO_MAX_MS)
    except OSError:
        return None
    return value


def tcp_info(sock: Any) -> dict[str, Any]:
    """The kernel's view of a TCP socket: RTT, RTO (seconds), retransmissions, user timeout.

    Also ``linear_timeouts`` (``TCP_THIN_LINEAR_TIMEOUTS`` as read back) and
    ``congestion`` (the congestion control algorithm), which decide how a lost segment is
    retransmitted.
    """
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
        user_timeout = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
        linear = sock.getsockopt(socket.IPPROTO_TCP, _TCP_THIN_LINEAR_TIMEOUTS)
        congestion = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
    except (OSError, AttributeError, ValueError):
        return {}
    kernel = {
        "user_timeout_ms": user_timeout,
        "rto_max_ms": _rto_max_ms(sock),
        "linear_timeouts": linear,
        "congestion": congestion.split(b"\0", 1)[0].decode(errors="replace"),
    }
    if len(info) < _TCP_INFO_SIZE:
        return kernel
    (rto,) = struct.unpack_from("I", info, _TCP_INFO_RTO)
    (rtt,) = struct.unpack_from("I", info, _TCP_INFO_RTT)
    (retrans,) = struct.unpack_from("I", info, _TCP_INFO_TOTAL_RETRANS)
    return {"tcp_rtt": rtt / 1e6, "tcp_rto": rto / 1e6, "tcp_retransmits": retrans, **kernel}


def _apply_tcp_options(sock: Any, endpoint: Endpoint) -> None:
    if endpoint.keepalive is not None:
        idle, interval, count = endpoint.keepalive
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
    if endpoint.user_timeout is not None:
        milliseconds = round(endpoint.user_timeout * 1000)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)


# ------------------------------------------------------------------------- links


class Ending(msgspec.Struct, frozen=True, kw_only=True):
    """How a connection ended, as the application learnt it."""

    reason: str
    source: str
    silence: float | None = None
    close_code: int | None = None
    detail: str = ""


class Link(abc.ABC):
    """One open connection of any kind: send, a stream of messages, and how it ended."""

    @abc.abstractmethod
    async def send(self, payload: bytes) -> None: ...

    @abc.abstractmethod
    async def read(self, deliver: Callable[[bytes], None]) -> None:
        """Deliver each message until the connection ends; never raises for the ending."""

    @abc.abstractmethod
    async def ended(self) -> Ending:
        """Wait until the connection is over; how it ended."""

    @abc.abstractmethod
    def socket(self) -> Any: ...

    def stats(self) -> dict[str, Any]:
        return tcp_info(self.socket())

    @abc.abstractmethod
    def close(self) -> None: ...


class PulsewireLink(Link):
    def __init__(self, connection: pulsewire.Connection) -> None:
        self.connection = connection

    async def send(self, payload: bytes) -> None:
        await self.connection.send(payload)

    async def read(self, deliver: Callable[[bytes], None]) -> None:
        with contextlib.suppress(pulsewire.ConnectionClosedError):
            async for message in self.connection:
                deliver(message)

    async def ended(self) -> Ending:
        death = await self.connection.wait_dead()
        return Ending(
            reason=death.reason.value,
            source=death.source.value,
            silence=death.silence,
            close_code=death.close_code,
            detail=death.describe(),
        )

    def socket(self) -> Any:
        return self.connection.get_extra_info("socket")

    def stats(self) -> dict[str, Any]:
        stats = self.connection.stats()
        return {
            **tcp_info(self.socket()),
            "state": stats.state.value,
            "pings_sent": stats.pings_sent,
            "pongs_received": stats.pongs_received,
            "pings_received": stats.pings_received,
            "rtt_p50": stats.rtt_p50,
            "rtt_p99": stats.rtt_p99,
            "rtt_max": stats.rtt_max,
            "timeout": stats.timeout,
            "silence": stats.silence,
        }

    def close(self) -> None:
        self.connection.abort()


class TcpLink(Link):
    """Newline-delimited messages on a plain TCP stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._ending: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()

    def _end(self, error: BaseException | None) -> None:
        if not self._ending.done():
            reason, source = classify(error)
            self._ending.set_result(Ending(reason=reason, source=source, detail=repr(error)))

    async def send(self, payload: bytes) -> None:
        if self._ending.done():
            raise ConnectionError("the connection has ended")
        try:
            self.writer.write(payload + b"\n")
            await self.writer.drain()
        except OSError as error:
            self._end(error)
            raise

    async def read(self, deliver: Callable[[bytes], None]) -> None:
        try:
            while True:
                line = await self.reader.readline()
                if not line.endswith(b"\n"):  # end of stream (a partial line is dropped)
                    self._end(None)
                    return
                deliver(line[:-1])
        except OSError as error:
            self._end(error)

    async def ended(self) -> Ending:
        return await self._ending

    def socket(self) -> Any:
        return self.writer.get_extra_info("socket")

    def close(self) -> None:
        self.writer.transport.abort()


class WebsocketsLink(Link):
    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def send(self, payload: bytes) -> None:
        await self.connection.send(payload)

    async def read(self, deliver: Callable[[bytes], None]) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            async for message in self.connection:
                deliver(message if isinstance(message, bytes) else message.encode())

    async def ended(self) -> Ending:
        await self.connection.wait_closed()
        return websockets_ending(self.connection)

    def socket(self) -> Any:
        return self.connection.transport.get_extra_info("socket")

    def stats(self) -> dict[str, Any]:
        return {**tcp_info(self.socket()), "latency": self.connection.latency}

    def close(self) -> None:
        self.connection.transport.abort()


def websockets_ending(connection: Any) -> Ending:
    """How a closed websockets connection ended (its keepalive, a close frame, or TCP)."""
    protocol = connection.protocol
    sent, received = protocol.close_sent, protocol.close_rcvd
    if sent is not None and sent.code == 1011 and "keepalive" in sent.reason:
        return Ending(
            reason="timeout", source="heartbeat", close_code=sent.code, detail=sent.reason
        )
    if received is not None:
        return Ending(reason="eof", source="peer", close_code=received.code, detail=str(received))
    error = connection.connection_exc
    reason, source = classify(error)
    return Ending(reason=reason, source=source, close_code=1006, detail=repr(error))


# ------------------------------------------------------------------------- watch


class Watched:
    """One connection of a ``watch`` process, with its probes in flight."""

    def __init__(self, endpoint: Endpoint, index: int, link: Link) -> None:
        self.endpoint = endpoint
        self.index = index
        self.link = link
        self.ending: Ending | None = None
        self.probes: dict[bytes, asyncio.Future[float]] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def deliver(self, message: bytes) -> None:
        waiter = self.probes.pop(message, None) if message.startswith(PROBE) else None
        if waiter is not None and not waiter.done():
            waiter.set_result(time.monotonic())

    async def probe(self, probe_id: int, within: float) -> dict[str, Any]:
        result: dict[str, Any] = {"endpoint": self.endpoint.name, "conn": self.index}
        if self.ending is not None:
            return {**result, "ok": False, "why": f"dead ({self.ending.reason})"}
        payload = PROBE + f"{probe_id}:{self.endpoint.name}:{self.index}".encode()
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.probes[payload] = waiter
        sent_at = time.monotonic()
        try:
            async with asyncio.timeout(within):
                await self.link.send(payload)
                answered_at = await waiter
        except TimeoutError:
            return {**result, "ok": False, "why": f"no answer in {within} s"}
        except Exception as error:
            return {**result, "ok": False, "why": repr(error)}
        finally:
            self.probes.pop(payload, None)
        return {**result, "ok": True, "rtt": answered_at - sent_at}

    async def run(self) -> None:
        reading = asyncio.create_task(self.link.read(self.deliver))
        self.tasks.append(reading)
        if self.endpoint.write_every is not None:
            self.tasks.append(asyncio.create_task(self.write(self.endpoint.write_every)))
        ending = await self.link.ended()
        at = time.monotonic()
        self.ending = ending
        emit(
            "dead",
            endpoint=self.endpoint.name,
            conn=self.index,
            at=at,
            reason=ending.reason,
            source=ending.source,
            silence=ending.silence,
            close_code=ending.close_code,
            detail=ending.detail,
        )
        for task in self.tasks:
            task.cancel()

    async def write(self, every: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        with contextlib.suppress(Exception):
            while self.ending is None:
                await self.link.send(FILLER)
                due += every
                await asyncio.sleep(max(0.0, due - loop.time()))


async def open_link(host: str, endpoint: Endpoint) -> Link:
    if endpoint.kind == "pulsewire":
        policy = endpoint.policy if endpoint.policy is not None else Policy()
        connection = await pulsewire.connect(
            host, endpoint.port, policy=policy, socket_options=endpoint.socket_options
        )
        return PulsewireLink(connection)
    if endpoint.kind == "tcp":
        async with asyncio.timeout(OPEN_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, endpoint.port)
        _apply_tcp_options(writer.get_extra_info("socket"), endpoint)
        return TcpLink(reader, writer)
    from websockets.asyncio.client import connect

    ws = await connect(
        f"ws://{host}:{endpoint.port}/",
        ping_interval=endpoint.ping_interval,
        ping_timeout=endpoint.ping_timeout,
        close_timeout=endpoint.close_timeout,
        open_timeout=OPEN_TIMEOUT,
        compression=None,
    )
    return WebsocketsLink(ws)


async def watch(plan: Plan) -> None:
    watched: list[Watched] = []
    try:
        async with asyncio.timeout(2 * OPEN_TIMEOUT):
            for endpoint in plan.endpoints:
                links = await asyncio.gather(
                    *(open_link(plan.host, endpoint) for _ in range(endpoint.connections))
                )
                watched += [Watched(endpoint, i, link) for i, link in enumerate(links)]
    except Exception as error:
        emit("error", error=f"opening connections: {error!r}")
        raise SystemExit(1) from error
    runs = [asyncio.create_task(w.run()) for w in watched]
    emit(
        "ready",
        at=time.monotonic(),
        connections=[
            {
                "endpoint": w.endpoint.name,
                "conn": w.index,
                "user_timeout_ms": tcp_info(w.link.socket()).get("user_timeout_ms"),
                "rto_max_ms": tcp_info(w.link.socket()).get("rto_max_ms"),
            }
            for w in watched
        ],
    )

    async def echo(command: dict[str, Any]) -> None:
        only = command.get("endpoint")
        targets = [w for w in watched if only is None or w.endpoint.name == only]
        results = await asyncio.gather(
            *(w.probe(int(command["id"]), float(command.get("timeout", 5.0))) for w in targets)
        )
        emit("echoed", id=command["id"], results=results)

    def stats(command: dict[str, Any]) -> None:
        rows = []
        for w in watched:
            row: dict[str, Any] = {"endpoint": w.endpoint.name, "conn": w.index}
            row["alive"] = w.ending is None
            if w.ending is None:
                with contextlib.suppress(Exception):
                    row.update(w.link.stats())
            rows.append(row)
        emit("stats", id=command.get("id"), connections=rows)

    pending: set[asyncio.Task[None]] = set()
    async for command in commands():
        if command.get("cmd") == "quit":
            break
        if command.get("cmd") == "echo":
            task = asyncio.create_task(echo(command))
            pending.add(task)
            task.add_done_callback(pending.discard)
        elif command.get("cmd") == "stats":
            stats(command)
        else:
            emit("error", error=f"unknown command {command!r}")
    for task in (*runs, *pending):
        task.cancel()
    for w in watched:
        w.link.close()


# ------------------------------------------------------------------------- serve


def _report_probe(endpoint: Endpoint, message: bytes) -> None:
    if message.startswith(PROBE):
        emit("received", endpoint=endpoint.name, payload=message.decode(errors="replace"))


async def serve(plan: Plan) -> None:
    ports: dict[str, int] = {}
    keep: list[Any] = []  # servers must stay referenced while the process runs
    for endpoint in plan.endpoints:
        if endpoint.kind == "pulsewire":
            listener = await pulsewire.serve(
                _pulsewire_echo(endpoint),
                plan.host,
                endpoint.port,
                policy=endpoint.policy if endpoint.policy is not None else Policy(),
                socket_options=endpoint.socket_options,
            )
            keep.append(listener)
            ports[endpoint.name] = listener.port
        elif endpoint.kind == "tcp":
            server = await asyncio.start_server(_tcp_echo(endpoint), plan.host, endpoint.port)
            keep.append(server)
            ports[endpoint.name] = server.sockets[0].getsockname()[1]
        else:
            from websockets.asyncio.server import serve as ws_serve

            ws_server = await ws_serve(
                _websockets_echo(endpoint),
                plan.host,
                endpoint.port,
                ping_interval=endpoint.ping_interval,
                ping_timeout=endpoint.ping_timeout,
                close_timeout=endpoint.close_timeout,
                compression=None,
            )
            keep.append(ws_server)
            ports[endpoint.name] = next(iter(ws_server.sockets)).getsockname()[1]
    emit("ready", ports=ports)
    async for command in commands():
        if command.get("cmd") == "quit":
            break


def _serve_dead(endpoint: Endpoint, ending: Ending) -> None:
    emit(
        "dead",
        endpoint=endpoint.name,
        conn=-1,
        at=time.monotonic(),
        reason=ending.reason,
        source=ending.source,
        silence=ending.silence,
        close_code=ending.close_code,
        detail=ending.detail,
        side="serve",
    )


def _pulsewire_echo(
    endpoint: Endpoint,
) -> Callable[[pulsewire.Connection], Awaitable[None]]:
    async def echo(connection: pulsewire.Connection) -> None:
        link = PulsewireLink(connection)

        async def answer(message: bytes) -> None:
            _report_probe(endpoint, message)
            with contextlib.suppress(pulsewire.ConnectionClosedError):
                await connection.send(message)

        with contextlib.suppress(pulsewire.ConnectionClosedError):
            async for message in connection:
                await answer(message)
        _serve_dead(endpoint, await link.ended())

    return echo


def _tcp_echo(
    endpoint: Endpoint,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _apply_tcp_options(writer.get_extra_info("socket"), endpoint)
        link = TcpLink(reader, writer)

        def answer(message: bytes) -> None:
            _report_probe(endpoint, message)
            writer.write(message + b"\n")

        await link.read(answer)
        _serve_dead(endpoint, await link.ended())
        writer.transport.abort()

    return echo


def _websockets_echo(endpoint: Endpoint) -> Callable[[Any], Awaitable[None]]:
    async def echo(connection: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            async for message in connection:
                _report_probe(endpoint, message if isinstance(message, bytes) else b"")
                await connection.send(message)
        await connection.wait_closed()
        _serve_dead(endpoint, websockets_ending(connection))

    return echo


# ------------------------------------------------------------------------- from a test


@dataclass(frozen=True, slots=True)
class Running:
    """A ``serve`` process on host b and a ``watch`` process on host a, both ready."""

    peer: HostProcess  #: ``serve``, on host b
    observer: HostProcess  #: ``watch``, on host a
    ports: dict[str, int]  #: each endpoint's port on host b
    ready_at: float  #: ``time.monotonic()`` when every connection was open

    def deaths(self) -> dict[str, list[dict[str, Any]]]:
        """The observer's ``dead`` messages so far, by endpoint name."""
        found: dict[str, list[dict[str, Any]]] = {}
        for message in self.observer.messages("dead"):
            found.setdefault(message["endpoint"], []).append(message)
        return found


def argv(role: Literal["serve", "watch"], plan: Plan) -> list[str]:
    """The command that runs an endpoints process (with this interpreter)."""
    return [sys.executable, str(SCRIPT), role, plan.to_json()]


def serve_and_watch(
    hosts: TwoHosts, endpoints: Sequence[Endpoint], *, within: float = 30.0
) -> Running:
    """Serve every endpoint on host b, connect to each from host a; wait until ready.

    Each endpoint's ``connections`` and ``write_every`` apply to the observer; the peer
    listens on any free port (``port`` is ignored). Both processes belong to ``hosts``,
    which kills them at its teardown.
    """
    peer = hosts.spawn(
        hosts.b, *argv("serve", Plan(host=hosts.b.address, endpoints=tuple(endpoints)))
    )
    ports: dict[str, int] = peer.wait_for("ready", within)[0]["ports"]
    watched = tuple(msgspec.structs.replace(e, port=ports[e.name]) for e in endpoints)
    observer = hosts.spawn(hosts.a, *argv("watch", Plan(host=hosts.b.address, endpoints=watched)))
    ready = observer.wait_for("ready", within)[0]
    return Running(peer=peer, observer=observer, ports=ports, ready_at=float(ready["at"]))


# ------------------------------------------------------------------------- main


async def commands() -> Any:
    """JSON commands from stdin, one per line, until ``quit`` or end of input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        try:
            command = json.loads(line)
        except ValueError:
            emit("error", error=f"not JSON: {line!r}")
            continue
        if isinstance(command, dict):
            yield command


def main(argv: list[str] | None = None) -> None:
    """``python benchmarks/lab/endpoints.py {serve,watch} PLAN_JSON``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("serve", "watch"):
        sys.stderr.write(__doc__ or "")
        raise SystemExit(2)
    # The library logs through `logging`; the application (this) says where: away from
    # stdout, which carries the protocol.
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    plan = msgspec.json.decode(args[1], type=Plan)
    run = serve if args[0] == "serve" else watch
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(plan))


if __name__ == "__main__":
    main()
