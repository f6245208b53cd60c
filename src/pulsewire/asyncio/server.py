"""Serving: a ``Server`` base class with hooks, plain handler functions, and ``serve()``."""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections import Counter
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
from pulsewire.core.policy import Limits, Policy
from pulsewire.errors import ConnectionClosedError

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

    _takes_messages: ClassVar[bool] = False
    #: The hooks this class overrides: the others are not even scheduled.
    _overridden: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._takes_messages = cls.on_message is not Server.on_message
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

    accepted: int
    active: int
    deaths: dict[str, int]


@final
class Listener:
    """A listening pulsewire server, as returned by :func:`serve`.

    Use it as an async context manager, or call :meth:`close`. ``port`` is the bound port
    (useful with ``port=0``).
    """

    def __init__(
        self,
        handler: Server | Handler,
        *,
        policy: Policy,
        limits: Limits,
        name: str,
    ) -> None:
        self.policy = policy
        self.limits = limits
        self.name = name
        self._hooks = handler if isinstance(handler, Server) else None
        self._handler = None if isinstance(handler, Server) else handler
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._accepted = 0
        self._deaths: Counter[str] = Counter()

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
        return frozenset(self._connections)

    def stats(self) -> ListenerStats:
        return ListenerStats(
            accepted=self._accepted, active=len(self._connections), deaths=dict(self._deaths)
        )

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "server closing") -> None:
        """Stop accepting, close every connection in order (bounded), and wait."""
        if self._server is not None:
            self._server.close()
        closing = [
            connection.close(code, reason)
            for connection in self._connections
            if connection._protocol is not None
        ]
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

    # ------------------------------------------------------------------ internals

    async def _start(
        self, host: str | None, port: int, ssl: _ssl.SSLContext | None, backlog: int
    ) -> None:
        loop = asyncio.get_running_loop()
        scheduler = scheduler_for(loop)
        self._server = await loop.create_server(
            lambda: PulsewireProtocol(self._new_connection(), scheduler, initiator=False),
            host,
            port,
            ssl=ssl,
            backlog=backlog,
        )
        addresses = [sock.getsockname() for sock in self._server.sockets]
        _log.info(logevents.SERVER_LISTENING, name=self.name, addresses=addresses)

    def _new_connection(self) -> Connection:
        connection = Connection(
            policy=self.policy,
            limits=self.limits,
            name=self.name,
            hooks=self._hooks,
            on_ready=self._connection_ready,
            on_dead=self._connection_dead,
        )
        self._accepted += 1
        self._connections.add(connection)
        return connection

    def _connection_ready(self, connection: Connection) -> None:
        if self._handler is None:
            return
        task = asyncio.get_running_loop().create_task(self._run_handler(connection))
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    def _connection_dead(self, connection: Connection, death: Death) -> None:
        self._connections.discard(connection)
        self._deaths[death.reason.value] += 1

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


async def serve(
    handler: Server | Handler,
    host: str | None = "127.0.0.1",
    port: int = 0,
    *,
    policy: Policy | None = None,
    limits: Limits | None = None,
    ssl: _ssl.SSLContext | None = None,
    name: str = "",
    backlog: int = 1024,
) -> Listener:
    """Listen for pulsewire connections and serve each with ``handler``.

    ``handler`` is either a :class:`Server` instance (hooks) or an ``async def
    handler(connection)`` function, run once per connection after the handshake; the
    connection is closed in order when it returns.
    """
    listener = Listener(
        handler,
        policy=policy if policy is not None else Policy(),
        limits=limits if limits is not None else Limits(),
        name=name,
    )
    await listener._start(host, port, ssl, backlog)
    return listener
