"""Serving: a ``Server`` base class with hooks, plain handler functions, ``serve()`` and
``serve_unix()``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl as _ssl
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, final

import msgspec

from pulsewire import logevents
from pulsewire._log import EventLogger, LoggerLike, Throttle, event_logger, get_logger
from pulsewire.asyncio.acceptor import Acceptor, tcp_sockets, unix_socket
from pulsewire.asyncio.arguments import (
    check_host,
    check_path,
    check_port,
    check_server_limits,
    check_settings,
    check_socket,
    check_tls,
)
from pulsewire.asyncio.connection import Connection
from pulsewire.asyncio.protocol import PulsewireProtocol, format_address
from pulsewire.asyncio.scheduler import scheduler_for
from pulsewire.core.events import Death
from pulsewire.core.frames import CloseCode
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.load import ServerLoad
from pulsewire.core.policy import Limits, Policy, ServerLimits
from pulsewire.driverkit.hooks import HookRunner, ListenerStats, ServerHooks
from pulsewire.driverkit.logs import death_fields
from pulsewire.errors import UsageError

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

__all__ = [
    "Handler",
    "Listener",
    "ListenerStats",
    "Server",
    "max_connections_for",
    "serve",
    "serve_unix",
]

_log = get_logger()

#: Failed handshakes logged in full per ``_LOG_INTERVAL``; beyond, counted in the next line.
_HANDSHAKE_FAILURE_BURST = 10
_LOG_INTERVAL = 10.0


def max_connections_for(limits: ServerLimits) -> int | None:
    """The connection limit in force: ``limits.max_connections``, or by default the soft
    ``RLIMIT_NOFILE`` less a reserve of ``max(64, limit // 16)`` files (``None``: none)."""
    if limits.max_connections is not None:
        return limits.max_connections
    if resource is None:  # pragma: no cover - Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(1, soft - max(64, soft // 16))


Handler = Callable[[Connection], Awaitable[None]]


class Server(ServerHooks[Connection]):
    """Subclass and override the hooks you need; every default does nothing.

    Hooks of one connection run one at a time, in the order of their events, in a task
    that exists only while there is work (an idle connection costs no task). A hook that
    raises is logged (``handler.error``) and the connection is closed with INTERNAL_ERROR.

    If ``on_message`` is overridden, every message goes to it (and is acknowledged to the
    peer's flow control once it returns); otherwise messages queue for ``connection.recv()``,
    so ``on_connect`` may also run a receive loop of its own.

    The hooks and the rules that run them are shared with the anyio driver
    (:class:`pulsewire.driverkit.hooks.ServerHooks`).
    """


@final
class Listener:
    """A listening pulsewire server, as returned by :func:`serve`.

    Use it as an async context manager, or call :meth:`close`. :attr:`port` is the bound
    port (useful with ``port=0``), :attr:`path` the Unix socket's path, :attr:`sockets`
    every listening socket. It is the observer of every connection it accepts: it runs
    the handler, or the server's hooks, one at a time per connection in the order of that
    connection's events, in a task that exists only while there is work (an idle
    connection costs no task).
    """

    def __init__(
        self,
        handler: Server | Handler,
        *,
        policy: Policy,
        limits: Limits,
        socket_options: SocketOptions,
        name: str,
        server_limits: ServerLimits | None = None,
        log: EventLogger | None = None,
    ) -> None:
        #: The policy of every connection it accepts.
        self.policy = policy
        #: The limits of every connection it accepts.
        self.limits = limits
        #: The socket options applied to every accepted TCP socket.
        self.socket_options = socket_options
        #: What it holds for all its peers together (connections, buffered inbound bytes).
        self.server_limits = server_limits = (
            server_limits if server_limits is not None else ServerLimits()
        )
        #: The name it sends in its HELLOs.
        self.name = name
        self._log = log if log is not None else _log
        self._load: ServerLoad[PulsewireProtocol] = ServerLoad(
            server_limits, max_connections=max_connections_for(server_limits)
        )
        # One callable for every protocol: an idle connection carries no closure of its own.
        self._on_inbound = self._inbound_changed
        self._refusing: set[Connection] = set()  # refused: no death of theirs is counted
        self._refused_log = Throttle(_LOG_INTERVAL)
        self._shed_log = Throttle(_LOG_INTERVAL)
        self._handshake_log = Throttle(_LOG_INTERVAL, burst=_HANDSHAKE_FAILURE_BURST)
        #: The listener logs failed handshakes itself, at a bounded rate.
        self.logs_handshake_failures = True
        self._acceptor: Acceptor | None = None
        self._handler_tasks: set[asyncio.Task[None]] = set()
        #: Runs the handler or the hooks, and counts the connections (the observer's work).
        self._runner: HookRunner[Connection] = HookRunner(handler, self._spawn, self._log)
        #: Messages go to the server's ``on_message``, not to ``recv()``.
        self.takes_messages = self._runner.takes_messages
        #: The Unix socket file this listener made, and its inode: removed on close.
        self._made_path: tuple[str, int] | None = None
        self._closed = asyncio.Event()

    # ------------------------------------------------------------------ public

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (one per address ``host`` resolved to; closed once the
        listener is)."""
        return () if self._acceptor is None else tuple(self._acceptor.sockets)

    @property
    def port(self) -> int:
        """The TCP port of the first listening socket (raises on a Unix socket: see
        :attr:`path`)."""
        address = self.sockets[0].getsockname()
        if not isinstance(address, tuple):
            raise UsageError(f"this listener is on the Unix socket {address!r}: see .path")
        port: int = address[1]
        return port

    @property
    def path(self) -> str | None:
        """The path of the Unix socket it listens on; ``None`` on TCP."""
        sockets = self.sockets
        if not sockets or sockets[0].family != getattr(socket, "AF_UNIX", None):
            return None
        address = sockets[0].getsockname()
        return address.decode(errors="replace") if isinstance(address, bytes) else str(address)

    @property
    def connections(self) -> frozenset[Connection]:
        """Connections accepted and not yet dead (including those still handshaking)."""
        return self._runner.connections

    def stats(self) -> ListenerStats:
        """A frozen snapshot: connections accepted, active, deaths by reason, and what
        the server's limits turned away."""
        load = self._load
        return msgspec.structs.replace(
            self._runner.stats(),
            refused=load.refused,
            shed=load.shed,
            max_connections=load.max_connections,
            inbound_held=load.held,
            peak_inbound_held=load.peak_held,
            accept_failures=0 if self._acceptor is None else self._acceptor.accept_failures,
        )

    async def serve_forever(self) -> None:
        """Serve until cancelled (Ctrl-C under ``asyncio.run``, or ``task.cancel()``), or
        until another task calls :meth:`close`.

        It only waits: the listener accepts connections from the moment :func:`serve`
        returns. Cancelling it does not close the listener; ``async with`` around it (or
        :meth:`close`) does, closing every connection in order.
        """
        if self._acceptor is None:
            raise UsageError("the listener is not listening: serve() starts it")
        # Not asyncio.Server.serve_forever(): from Python 3.12, cancelling it waits for
        # every connection to close, and ours stay open until close() closes them.
        await self._closed.wait()

    async def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "server closing") -> None:
        """Stop accepting, close every connection in order (bounded), and wait."""
        self._closed.set()
        if self._acceptor is not None:
            self._acceptor.close()
        closing = [connection.close(code, reason) for connection in self.connections]
        if closing:
            # A connection that could not deliver everything raises: its death is logged.
            await asyncio.gather(*closing, return_exceptions=True)
        for connection in self.connections:
            connection.abort()
        if self._acceptor is not None:
            await self._acceptor.wait_closed()
        if self._handler_tasks:
            await asyncio.gather(*self._handler_tasks, return_exceptions=True)
        self._remove_socket_file()
        stats = self.stats()
        self._log.info(
            logevents.SERVER_CLOSED,
            name=self.name,
            accepted=stats.accepted,
            refused=stats.refused,
            shed=stats.shed,
            accept_failures=stats.accept_failures,
            handshake_failures=sum(stats.handshake_failures.values()),
        )

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ ConnectionObserver

    def connection_made(self, connection: Connection) -> None:
        """Called by an accepted connection once its transport is up (after TLS): counts
        it (a client that fails TLS never gets this far), or refuses it at
        ``max_connections``. Not for applications to call."""
        self._runner.connection_made(connection)
        if not self._load.admit():
            self._runner.forget(connection)
            self._refuse(connection)

    def connection_ready(self, connection: Connection) -> None:
        """Called by an accepted connection when its handshake completes: runs the
        handler, or ``on_connect``. Not for applications to call."""
        self._runner.connection_ready(connection)

    def message_received(
        self, connection: Connection, message: bytes, consumed: Callable[[int], None]
    ) -> None:
        """Called by a connection for each message when the server overrides
        ``on_message``: runs it, then reports the message consumed. Not for applications."""
        self._runner.message_received(connection, message, consumed)

    def connection_suspected(self, connection: Connection) -> None:
        """Called by a connection that turned SUSPECT: runs ``on_suspect``."""
        self._runner.connection_suspected(connection)

    def connection_recovered(self, connection: Connection) -> None:
        """Called by a suspect connection that recovered: runs ``on_recover``."""
        self._runner.connection_recovered(connection)

    def connection_dead(self, connection: Connection, death: Death) -> None:
        """Called by a connection that died: counts it, logs a failed handshake (at a
        bounded rate), and runs ``on_dead`` if ``on_connect`` ran."""
        if connection in self._refusing:
            self._refusing.discard(connection)  # counted as refused, logged as such
            return
        self._load.release()
        if connection.negotiated is None:
            held = self._handshake_log.allow()
            if held is not None:
                quiet = death.reason.value in ("local_close", "eof")
                (self._log.info if quiet else self._log.warning)(
                    logevents.HANDSHAKE_FAILED,
                    peer=connection.peer_address,
                    **death_fields(death),
                    held_back=held,
                )
        self._runner.connection_dead(connection, death)

    # ------------------------------------------------------------------ internals

    async def _start(
        self,
        sockets: list[socket.socket],
        *,
        ssl: _ssl.SSLContext | None,
        unix_path: str | None = None,
    ) -> None:
        self._acceptor = Acceptor(
            sockets,
            self._new_protocol,
            ssl=ssl,
            ssl_handshake_timeout=self.policy.handshake_timeout if ssl is not None else None,
            log=self._log,
        )
        try:
            await self._acceptor.start()
        except BaseException:
            self._acceptor.close()
            raise
        if unix_path is not None and not unix_path.startswith("\0"):
            with contextlib.suppress(OSError):
                self._made_path = (unix_path, os.stat(unix_path).st_ino)
        addresses = [format_address(sock.getsockname()) for sock in sockets]
        self._log.info(
            logevents.SERVER_LISTENING,
            name=self.name,
            addresses=addresses,
            max_connections=self._load.max_connections,
            inbound_budget=self._load.budget,
        )

    def _refuse(self, connection: Connection) -> None:
        """At the connection limit: tell the newcomer so, and let it go."""
        limit = self._load.max_connections
        held = self._refused_log.allow()
        if held is not None:
            self._log.warning(
                logevents.SERVER_REFUSED,
                peer=connection.peer_address,
                limit=limit,
                held_back=held,
            )
        self._refusing.add(connection)
        connection.close_now(
            CloseCode.OVERLOADED, f"the server is at its connection limit ({limit})"
        )

    def _inbound_changed(self, protocol: PulsewireProtocol, held: int, incomplete: int) -> None:
        """A connection holds more or less for its peer: shed the largest holders if the
        server as a whole holds more than its budget."""
        for victim in self._load.hold(protocol, held, incomplete):
            logged = self._shed_log.allow()
            if logged is not None:
                self._log.warning(
                    logevents.SERVER_SHED,
                    peer=victim.peer_address,
                    budget=self._load.budget,
                    held_back=logged,
                )
            victim.close_now(
                CloseCode.OVERLOADED,
                f"the server holds more than its inbound budget ({self._load.budget} bytes)",
            )

    def _remove_socket_file(self) -> None:
        """Remove the Unix socket file this listener made, unless another took its place."""
        made, self._made_path = self._made_path, None
        if made is not None:
            path, inode = made
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == inode:
                    os.unlink(path)

    def _new_protocol(self) -> PulsewireProtocol:
        protocol = PulsewireProtocol(
            scheduler_for(asyncio.get_running_loop()),
            policy=self.policy,
            limits=self.limits,
            socket_options=self.socket_options,
            name=self.name,
            initiator=False,
            log=self._log,
        )
        Connection(protocol, observer=self)  # it joins the listener once connected
        if self._load.budget is not None:
            protocol.on_inbound = self._on_inbound
        return protocol

    def _spawn(self, connection: Connection, call: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = asyncio.get_running_loop().create_task(call())
        # Keep a reference: the loop holds tasks only weakly.
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)


async def serve(
    handler: Server | Handler,
    host: str | None = "127.0.0.1",
    port: int = 0,
    *,
    sock: socket.socket | None = None,
    policy: Policy | None = None,
    limits: Limits | None = None,
    server_limits: ServerLimits | None = None,
    socket_options: SocketOptions | None = None,
    ssl: _ssl.SSLContext | None = None,
    name: str = "",
    backlog: int = 1024,
    logger: LoggerLike | None = None,
) -> Listener:
    """Listen for pulsewire connections on TCP and serve each with ``handler``.

    ``handler`` is either a :class:`Server` instance (hooks) or an ``async def
    handler(connection)`` function, run once per connection after the handshake; the
    connection is closed in order when it returns.

    Where: ``host`` and ``port`` (default ``127.0.0.1``, a free port: see
    :attr:`Listener.port`; ``host=None`` listens on every interface), or ``sock``: a TCP
    socket the caller already bound (or set listening), as ``loop.create_server``'s
    ``sock=``; host and port must then be left out. For a Unix socket see
    :func:`serve_unix`.

    ``ssl``: an ``ssl.SSLContext`` for TLS (set ``verify_mode = ssl.CERT_REQUIRED`` and
    load a CA to require client certificates); the TLS handshake, like the pulsewire one,
    must complete within ``policy.handshake_timeout``. ``socket_options`` are set on every
    accepted TCP socket (default :class:`~pulsewire.SocketOptions`). ``server_limits``:
    what the server holds for all its peers together (connections, buffered inbound
    bytes; default :class:`~pulsewire.ServerLimits`, see ``docs/security.md``).
    ``logger``: where the listener's and its connections' log events go (as for
    :func:`connect`).

    Raises ``TypeError``, ``ValueError``, :class:`~pulsewire.UsageError` or
    :class:`~pulsewire.PolicyError` for bad arguments, and ``OSError`` when it cannot
    listen (the address is in use, say).
    """
    check_tls(ssl, None, needs_hostname=False)
    if sock is not None:
        if host != "127.0.0.1" or port != 0:
            raise UsageError("serve() takes host and port, or sock=, not both")
        check_socket(sock, connected=False)
    else:
        if host is not None:
            check_host(host)
        check_port(port, allow_zero=True)
    policy = policy if policy is not None else Policy()
    limits = limits if limits is not None else Limits()
    socket_options = socket_options if socket_options is not None else SocketOptions()
    check_settings(policy, limits, socket_options, name)
    server_limits = check_server_limits(
        server_limits if server_limits is not None else ServerLimits(), limits
    )
    listener = Listener(
        handler,
        policy=policy,
        limits=limits,
        server_limits=server_limits,
        socket_options=socket_options,
        name=name,
        log=event_logger(logger, _log),
    )
    if sock is not None:
        sock.listen(backlog)  # as loop.create_server(sock=...) does
        sockets = [sock]
    else:
        sockets = await tcp_sockets(host, port, backlog)
    await listener._start(sockets, ssl=ssl)
    return listener


async def serve_unix(
    handler: Server | Handler,
    path: str | os.PathLike[str],
    *,
    policy: Policy | None = None,
    limits: Limits | None = None,
    server_limits: ServerLimits | None = None,
    ssl: _ssl.SSLContext | None = None,
    name: str = "",
    backlog: int = 1024,
    logger: LoggerLike | None = None,
) -> Listener:
    """Listen for pulsewire connections on the Unix socket ``path``, like
    ``asyncio.start_unix_server``; otherwise as :func:`serve`.

    A stale socket file at ``path`` is replaced; the file is removed again when the
    listener closes. :attr:`Listener.path` says where it listens. Unix sockets have no TCP
    options: nothing is set on them, and ``Connection.kernel_report`` stays ``None``.
    """
    check_tls(ssl, None, needs_hostname=False)
    path = check_path(path)
    policy = policy if policy is not None else Policy()
    limits = limits if limits is not None else Limits()
    check_settings(policy, limits, SocketOptions(), name)
    server_limits = check_server_limits(
        server_limits if server_limits is not None else ServerLimits(), limits
    )
    listener = Listener(
        handler,
        policy=policy,
        limits=limits,
        server_limits=server_limits,
        socket_options=SocketOptions(),
        name=name,
        log=event_logger(logger, _log),
    )
    await listener._start([unix_socket(path, backlog)], ssl=ssl, unix_path=path)
    return listener
