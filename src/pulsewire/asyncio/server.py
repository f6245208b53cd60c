"""Serving: a ``Server`` base class with hooks, plain handler functions, and ``serve()``."""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ClassVar, final

import msgspec
import structlog

from pulsewire import logevents
from pulsewire.asyncio.connection import Connection
from pulsewire.asyncio.protocol import PulsewireProtocol
from pulsewire.asyncio.scheduler import scheduler_for
from pulsewire.core.events import Death
from pulsewire.core.frames import CloseCode
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Limits, Policy
from pulsewire.errors import ConnectionClosedError, UsageError

__all__ = ["Handler", "Listener", "ListenerStats", "Server", "serve"]

_log = structlog.get_logger("pulsewire")

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
    """Counters for a listener: connections accepted, alive now, and deaths by reason."""

    accepted: int  #: connections accepted so far
    active: int  #: connections accepted and not yet dead
    deaths: dict[str, int]  #: deaths so far, by ``Reason`` value


@final
class Listener:
    """A listening pulsewire server, as returned by :func:`serve`.

    Use it as an async context manager, or call :meth:`close`. ``port`` is the bound port
    (useful with ``port=0``). It is the observer of every connection it accepts: it runs
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
    ) -> None:
        #: The policy of every connection it accepts.
        self.policy = policy
        #: The limits of every connection it accepts.
        self.limits = limits
        #: The socket options applied to every accepted TCP socket.
        self.socket_options = socket_options
        #: The name it sends in its HELLOs.
        self.name = name
        self._hooks = handler if isinstance(handler, Server) else None
        self._handler = None if isinstance(handler, Server) else handler
        overridden = frozenset() if self._hooks is None else self._hooks._overridden
        self._overridden: frozenset[str] = overridden
        #: Messages go to the server's ``on_message``, not to ``recv()``.
        self.takes_messages = "on_message" in overridden
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._hook_queues: dict[Connection, deque[Callable[[], Awaitable[None]]]] = {}
        self._accepted = 0
        self._deaths: Counter[str] = Counter()
        self._closed = asyncio.Event()

    # ------------------------------------------------------------------ public

    @property
    def sockets(self) -> tuple[Any, ...]:
        """The listening sockets (one per address ``host`` resolved to; empty once closed)."""
        return () if self._server is None else tuple(self._server.sockets)

    @property
    def port(self) -> int:
        """The port of the first listening socket."""
        port: int = self.sockets[0].getsockname()[1]
        return port

    @property
    def connections(self) -> frozenset[Connection]:
        """Connections accepted and not yet dead (including those still handshaking)."""
        return frozenset(self._connections)

    def stats(self) -> ListenerStats:
        """A frozen snapshot: connections accepted, active, and deaths by reason."""
        return ListenerStats(
            accepted=self._accepted, active=len(self._connections), deaths=dict(self._deaths)
        )

    async def serve_forever(self) -> None:
        """Serve until cancelled (Ctrl-C under ``asyncio.run``, or ``task.cancel()``), or
        until another task calls :meth:`close`.

        It only waits: the listener accepts connections from the moment :func:`serve`
        returns. Cancelling it does not close the listener; ``async with`` around it (or
        :meth:`close`) does, closing every connection in order.
        """
        if self._server is None:
            raise UsageError("the listener is not listening: serve() starts it")
        # Not asyncio.Server.serve_forever(): from Python 3.12, cancelling it waits for
        # every connection to close, and ours stay open until close() closes them.
        await self._closed.wait()

    async def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "server closing") -> None:
        """Stop accepting, close every connection in order (bounded), and wait."""
        self._closed.set()
        if self._server is not None:
            self._server.close()
        closing = [connection.close(code, reason) for connection in self._connections]
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)
        for connection in list(self._connections):
            connection.abort()
        if self._server is not None:
            await self._server.wait_closed()
        if self._handler_tasks:
            await asyncio.gather(*self._handler_tasks, return_exceptions=True)
        _log.info(logevents.SERVER_CLOSED, name=self.name, accepted=self._accepted)

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

    def connection_ready(self, connection: Connection) -> None:
        """Called by an accepted connection when its handshake completes (the listener is
        each connection's ``ConnectionObserver``): runs the handler, or ``on_connect``.
        Not for applications to call."""
        if self._handler is not None:
            task = asyncio.get_running_loop().create_task(self._run_handler(connection))
            self._handler_tasks.add(task)
            task.add_done_callback(self._handler_tasks.discard)
        self._run_hook(connection, "on_connect", connection)

    def message_received(
        self, connection: Connection, message: bytes, consumed: Callable[[int], None]
    ) -> None:
        """Called by a connection for each message when the server overrides
        ``on_message``: runs it, then reports the message consumed. Not for applications."""
        assert self._hooks is not None

        async def deliver() -> None:
            assert self._hooks is not None
            try:
                await self._hooks.on_message(connection, message)
            finally:
                consumed(len(message))

        self._queue(connection, deliver)

    def connection_suspected(self, connection: Connection) -> None:
        """Called by a connection that turned SUSPECT: runs ``on_suspect``."""
        self._run_hook(connection, "on_suspect", connection)

    def connection_recovered(self, connection: Connection) -> None:
        """Called by a suspect connection that recovered: runs ``on_recover``."""
        self._run_hook(connection, "on_recover", connection)

    def connection_dead(self, connection: Connection, death: Death) -> None:
        """Called by a connection that died: counts it, and runs ``on_dead`` if
        ``on_connect`` ran."""
        self._connections.discard(connection)
        self._deaths[death.reason.value] += 1
        if connection.negotiated is not None:
            # Only connections that reached on_connect get on_dead: hooks come in pairs.
            self._run_hook(connection, "on_dead", connection, death)

    # ------------------------------------------------------------------ internals

    async def _start(
        self, host: str | None, port: int, ssl: _ssl.SSLContext | None, backlog: int
    ) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_protocol, host, port, ssl=ssl, backlog=backlog
        )
        addresses = [sock.getsockname() for sock in self._server.sockets]
        _log.info(logevents.SERVER_LISTENING, name=self.name, addresses=addresses)

    def _new_protocol(self) -> PulsewireProtocol:
        protocol = PulsewireProtocol(
            scheduler_for(asyncio.get_running_loop()),
            policy=self.policy,
            limits=self.limits,
            socket_options=self.socket_options,
            name=self.name,
            initiator=False,
        )
        self._connections.add(Connection(protocol, observer=self))
        self._accepted += 1
        return protocol

    async def _run_handler(self, connection: Connection) -> None:
        assert self._handler is not None
        code, reason = CloseCode.NORMAL, ""
        try:
            await self._handler(connection)
        except ConnectionClosedError:
            return
        except Exception:
            _log.exception(logevents.HANDLER_ERROR, peer=connection.peer_address)
            code, reason = CloseCode.INTERNAL_ERROR, "handler error"
        if connection.death is None:
            # The handler is done with the connection: close it in order.
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
                    _log.exception(logevents.HANDLER_ERROR, peer=connection.peer_address)
                    if connection.death is None:
                        await connection.close(CloseCode.INTERNAL_ERROR, "handler error")
        finally:
            del self._hook_queues[connection]


async def serve(
    handler: Server | Handler,
    host: str | None = "127.0.0.1",
    port: int = 0,
    *,
    policy: Policy | None = None,
    limits: Limits | None = None,
    socket_options: SocketOptions | None = None,
    ssl: _ssl.SSLContext | None = None,
    name: str = "",
    backlog: int = 1024,
) -> Listener:
    """Listen for pulsewire connections and serve each with ``handler``.

    ``handler`` is either a :class:`Server` instance (hooks) or an ``async def
    handler(connection)`` function, run once per connection after the handshake; the
    connection is closed in order when it returns. ``socket_options`` are set on every
    accepted TCP socket (default :class:`~pulsewire.SocketOptions`).
    """
    listener = Listener(
        handler,
        policy=policy if policy is not None else Policy(),
        limits=limits if limits is not None else Limits(),
        socket_options=socket_options if socket_options is not None else SocketOptions(),
        name=name,
    )
    await listener._start(host, port, ssl, backlog)
    return listener
