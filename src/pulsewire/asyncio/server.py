"""Serving: a ``Server`` base class with hooks, plain handler functions, ``serve()`` and
``serve_unix()``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl as _ssl
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ClassVar, final

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
from pulsewire.asyncio.connection import Connection, death_fields
from pulsewire.asyncio.protocol import PulsewireProtocol, format_address
from pulsewire.asyncio.scheduler import scheduler_for
from pulsewire.core.events import Death
from pulsewire.core.frames import CloseCode
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.load import ServerLoad
from pulsewire.core.policy import Limits, Policy, ServerLimits
from pulsewire.errors import ConnectionClosedError, UsageError

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

_HOOKS = ("on_connect", "on_message", "on_suspect", "on_recover", "on_dead")


class Server:
    """Subclass and override the hooks you need; every default does nothing.

    Hooks of one connection run one at a time, in the order of their events, in a task
    that exists only while there is work (an idle connection costs no task). A hook that
    raises is logged (``handler.error``) and the connection is closed with INTERNAL_ERROR.

    If ``on_message`` is overridden, every message goes to it (and is acknowledged to the
    peer's flow control once it returns); otherwise messages queue for ``connection.recv()``,
    so ``on_connect`` may also run a receive loop of its own.
    """

    #: The hooks this class overrides: the others are not even scheduled.
    _overridden: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._overridden = frozenset(
            name for name in _HOOKS if getattr(cls, name) is not getattr(Server, name)
        )

    async def on_connect(self, connection: Connection) -> None:
        """The handshake completed."""

    async def on_message(self, connection: Connection, message: bytes) -> None:
        """A message arrived."""

    async def on_suspect(self, connection: Connection) -> None:
        """The peer has been silent past ``suspect_after``; it may still recover."""

    async def on_recover(self, connection: Connection) -> None:
        """A suspect peer sent evidence of life again."""

    async def on_dead(self, connection: Connection, death: Death) -> None:
        """The connection died; ``death.reason`` says why."""


class ListenerStats(msgspec.Struct, frozen=True):
    """Counters for a listener: connections accepted, alive now, and how the others ended."""

    accepted: int  #: transports connected (after TLS, if any), refused ones included
    active: int  #: accepted and not dead yet (handshaking or established)
    deaths: dict[str, int]  #: deaths of established connections, by reason
    #: connections that died before their handshake completed, by reason (a peer that is
    #: not pulsewire, or never sent its HELLO: ``timeout``; a port scan or health check: ``eof``)
    handshake_failures: dict[str, int] = msgspec.field(default_factory=dict)
    refused: int = 0  #: refused at ``max_connections`` with ``CLOSE(OVERLOADED)``
    shed: int = 0  #: closed with ``CLOSE(OVERLOADED)`` to keep within ``inbound_budget``
    max_connections: int | None = None  #: the connection limit in force
    inbound_held: int = 0  #: bytes held for peers now, across every connection
    peak_inbound_held: int = 0  #: the most ``inbound_held`` has been
    accept_failures: int = 0  #: ``accept()`` calls that failed (EMFILE, ENFILE, ...)


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
        self.policy = policy
        self.limits = limits
        self.socket_options = socket_options
        self.server_limits = server_limits = (
            server_limits if server_limits is not None else ServerLimits()
        )
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
        self._hooks = handler if isinstance(handler, Server) else None
        self._handler = None if isinstance(handler, Server) else handler
        overridden = frozenset() if self._hooks is None else self._hooks._overridden
        self._overridden: frozenset[str] = overridden
        #: Messages go to the server's ``on_message``, not to ``recv()``.
        self.takes_messages = "on_message" in overridden
        #: The listener logs failed handshakes itself, at a bounded rate.
        self.logs_handshake_failures = True
        self._acceptor: Acceptor | None = None
        self._connections: set[Connection] = set()
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._hook_queues: dict[Connection, deque[Callable[[], Awaitable[None]]]] = {}
        self._accepted = 0
        self._deaths: Counter[str] = Counter()
        self._handshake_failures: Counter[str] = Counter()
        #: The Unix socket file this listener made, and its inode: removed on close.
        self._made_path: tuple[str, int] | None = None

    # ------------------------------------------------------------------ public

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (closed once the listener is)."""
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
        return frozenset(self._connections)

    def stats(self) -> ListenerStats:
        load = self._load
        return ListenerStats(
            accepted=self._accepted,
            active=len(self._connections),
            deaths=dict(self._deaths),
            handshake_failures=dict(self._handshake_failures),
            refused=load.refused,
            shed=load.shed,
            max_connections=load.max_connections,
            inbound_held=load.held,
            peak_inbound_held=load.peak_held,
            accept_failures=0 if self._acceptor is None else self._acceptor.accept_failures,
        )

    async def serve_forever(self) -> None:
        """Wait until the listener is closed (it accepts from the start)."""
        assert self._acceptor is not None
        await self._acceptor.wait_closed()

    async def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "server closing") -> None:
        """Stop accepting, close every connection in order (bounded), and wait."""
        if self._acceptor is not None:
            self._acceptor.close()
        closing = [connection.close(code, reason) for connection in self._connections]
        if closing:
            # A connection that could not deliver everything raises: its death is logged.
            await asyncio.gather(*closing, return_exceptions=True)
        for connection in list(self._connections):
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
        # Counted once the transport is up: a client that fails TLS never gets this far.
        self._accepted += 1
        if not self._load.admit():
            self._refuse(connection)
            return
        self._connections.add(connection)

    def connection_ready(self, connection: Connection) -> None:
        if self._handler is not None:
            task = asyncio.get_running_loop().create_task(self._run_handler(connection))
            self._handler_tasks.add(task)
            task.add_done_callback(self._handler_tasks.discard)
        self._run_hook(connection, "on_connect", connection)

    def message_received(
        self, connection: Connection, message: bytes, consumed: Callable[[int], None]
    ) -> None:
        assert self._hooks is not None

        async def deliver() -> None:
            assert self._hooks is not None
            try:
                await self._hooks.on_message(connection, message)
            finally:
                consumed(len(message))

        self._queue(connection, deliver)

    def connection_suspected(self, connection: Connection) -> None:
        self._run_hook(connection, "on_suspect", connection)

    def connection_recovered(self, connection: Connection) -> None:
        self._run_hook(connection, "on_recover", connection)

    def connection_dead(self, connection: Connection, death: Death) -> None:
        if connection in self._refusing:
            self._refusing.discard(connection)  # counted as refused, logged as such
            return
        self._connections.discard(connection)
        self._load.release()
        if connection.negotiated is None:
            self._handshake_failures[death.reason.value] += 1
            held = self._handshake_log.allow()
            if held is not None:
                quiet = death.reason.value in ("local_close", "eof")
                (self._log.info if quiet else self._log.warning)(
                    logevents.HANDSHAKE_FAILED,
                    peer=connection.peer_address,
                    **death_fields(death),
                    held_back=held,
                )
            return
        self._deaths[death.reason.value] += 1
        # Only connections that reached on_connect get on_dead: hooks come in pairs.
        self._run_hook(connection, "on_dead", connection, death)

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

    async def _run_handler(self, connection: Connection) -> None:
        assert self._handler is not None
        code, reason = CloseCode.NORMAL, ""
        try:
            await self._handler(connection)
        except ConnectionClosedError:
            return
        except Exception:
            self._log.exception(logevents.HANDLER_ERROR, peer=connection.peer_address)
            code, reason = CloseCode.INTERNAL_ERROR, "handler error"
        if connection.death is None:
            # The handler is done with the connection: close it in order. What could not
            # be delivered is on its death, which peer.dead logs.
            with contextlib.suppress(ConnectionClosedError):
                await connection.close(code, reason)

    def _run_hook(self, connection: Connection, name: str, *args: Any) -> None:
        """Run the server's hook ``name``, unless the server left it empty."""
        if name in self._overridden:
            hook = getattr(self._hooks, name)
            self._queue(connection, lambda: hook(*args))

    def _queue(self, connection: Connection, call: Callable[[], Awaitable[None]]) -> None:
        """Hooks of one connection run one at a time, in the order of their events."""
        queue = self._hook_queues.get(connection)
        if queue is not None:
            queue.append(call)
            return
        self._hook_queues[connection] = deque([call])
        task = asyncio.get_running_loop().create_task(self._drain_hooks(connection))
        # Keep a reference: the loop holds tasks only weakly.
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    async def _drain_hooks(self, connection: Connection) -> None:
        queue = self._hook_queues[connection]
        try:
            while queue:
                call = queue.popleft()
                try:
                    await call()
                except ConnectionClosedError:
                    pass  # the death is reported through on_dead and the log already
                except Exception:
                    self._log.exception(logevents.HANDLER_ERROR, peer=connection.peer_address)
                    if connection.death is None:
                        with contextlib.suppress(ConnectionClosedError):
                            await connection.close(CloseCode.INTERNAL_ERROR, "handler error")
        finally:
            del self._hook_queues[connection]


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
