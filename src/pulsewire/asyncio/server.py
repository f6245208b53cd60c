"""Serving: a ``Server`` base class with hooks, plain handler functions, and ``serve()``."""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, final

import structlog

from pulsewire import logevents
from pulsewire.asyncio.connection import Connection
from pulsewire.asyncio.protocol import PulsewireProtocol
from pulsewire.asyncio.scheduler import scheduler_for
from pulsewire.core.events import Death
from pulsewire.core.frames import CloseCode
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Limits, Policy
from pulsewire.driverkit.hooks import HookRunner, ListenerStats, ServerHooks

__all__ = ["Handler", "Listener", "ListenerStats", "Server", "serve"]

_log = structlog.get_logger("pulsewire")

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
        self.policy = policy
        self.limits = limits
        self.socket_options = socket_options
        self.name = name
        self._server: asyncio.Server | None = None
        self._handler_tasks: set[asyncio.Task[None]] = set()
        #: Runs the handler or the hooks, and counts the connections (the observer).
        self._runner: HookRunner[Connection] = HookRunner(handler, self._spawn)
        #: Messages go to the server's ``on_message``, not to ``recv()``.
        self.takes_messages = self._runner.takes_messages

    # ------------------------------------------------------------------ public

    @property
    def sockets(self) -> tuple[Any, ...]:
        return () if self._server is None else tuple(self._server.sockets)

    @property
    def port(self) -> int:
        """The port of the first listening socket."""
        port: int = self.sockets[0].getsockname()[1]
        return port

    @property
    def connections(self) -> frozenset[Connection]:
        """Connections accepted and not yet dead (including those still handshaking)."""
        return self._runner.connections

    def stats(self) -> ListenerStats:
        return self._runner.stats()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "server closing") -> None:
        """Stop accepting, close every connection in order (bounded), and wait."""
        if self._server is not None:
            self._server.close()
        closing = [connection.close(code, reason) for connection in self.connections]
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)
        for connection in self.connections:
            connection.abort()
        if self._server is not None:
            await self._server.wait_closed()
        if self._handler_tasks:
            await asyncio.gather(*self._handler_tasks, return_exceptions=True)
        _log.info(logevents.SERVER_CLOSED, name=self.name, accepted=self.stats().accepted)

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
        self._runner.connection_ready(connection)

    def message_received(
        self, connection: Connection, message: bytes, consumed: Callable[[int], None]
    ) -> None:
        self._runner.message_received(connection, message, consumed)

    def connection_suspected(self, connection: Connection) -> None:
        self._runner.connection_suspected(connection)

    def connection_recovered(self, connection: Connection) -> None:
        self._runner.connection_recovered(connection)

    def connection_dead(self, connection: Connection, death: Death) -> None:
        self._runner.connection_dead(connection, death)

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
        self._runner.accepted(Connection(protocol, observer=self))
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
