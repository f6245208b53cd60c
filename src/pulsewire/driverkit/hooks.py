"""The ``Server`` hooks and the rules for running them, shared by every driver.

A listener hands each connection to a :class:`HookRunner`, which runs the user's handler
function or :class:`ServerHooks` subclass by these rules, whatever the I/O library:

- a handler function runs once per connection, after the handshake; when it returns the
  connection is closed in order;
- hooks of one connection run one at a time, in the order of their events, in a task that
  exists only while there is work (an idle connection costs no task); hooks the server
  leaves empty are not even scheduled;
- ``on_dead`` comes only after an ``on_connect``: hooks come in pairs;
- a hook or handler that raises is logged (``handler.error``) and its connection closed
  with INTERNAL_ERROR; a :class:`~pulsewire.ConnectionClosedError` escaping it is not an
  error (the death is reported through ``on_dead`` and the log already). Errors never
  reach the listener's task group: one connection's bug must not end every other.

The driver supplies how to start a task (``spawn``); everything else is here.
"""

from __future__ import annotations

import contextlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import msgspec

from pulsewire import logevents
from pulsewire._log import EventLogger
from pulsewire.core.events import Death
from pulsewire.core.frames import CloseCode
from pulsewire.core.session import Negotiated
from pulsewire.errors import ConnectionClosedError

__all__ = ["HOOKS", "HookRunner", "HookedConnection", "ListenerStats", "ServerHooks"]

HOOKS = ("on_connect", "on_message", "on_suspect", "on_recover", "on_dead")


class HookedConnection(Protocol):
    """What the hook rules need of a connection (both drivers' ``Connection`` have it)."""

    @property
    def death(self) -> Death | None: ...

    @property
    def negotiated(self) -> Negotiated | None: ...

    @property
    def peer_address(self) -> str: ...

    async def close(self, code: int = ..., reason: str = ...) -> Death: ...


C = TypeVar("C", bound=HookedConnection)
#: Starts ``call()`` in a new task that belongs to ``connection``.
Spawn = Callable[[C, Callable[[], Coroutine[Any, Any, None]]], None]


class ServerHooks(Generic[C]):
    """Subclass and override the hooks you need; every default does nothing.

    ``pulsewire.Server`` (asyncio) and ``pulsewire.anyio.Server`` are this class for their
    own ``Connection``; the rules that run the hooks are in this module's docstring.
    If ``on_message`` is overridden, every message goes to it (and is acknowledged to the
    peer's flow control once it returns); otherwise messages queue for
    ``connection.recv()``, so ``on_connect`` may also run a receive loop of its own.
    """

    #: The hooks this class overrides: the others are not even scheduled.
    _overridden: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._overridden = frozenset(
            name for name in HOOKS if getattr(cls, name) is not getattr(ServerHooks, name)
        )

    async def on_connect(self, connection: C) -> None:
        """The handshake completed."""

    async def on_message(self, connection: C, message: bytes) -> None:
        """A message arrived."""

    async def on_suspect(self, connection: C) -> None:
        """The peer has been silent past ``suspect_after``; it may still recover."""

    async def on_recover(self, connection: C) -> None:
        """A suspect peer sent evidence of life again."""

    async def on_dead(self, connection: C, death: Death) -> None:
        """The connection died; ``death.reason`` says why."""


class ListenerStats(msgspec.Struct, frozen=True):
    """Counters for a listener: connections accepted, alive now, and how the others ended."""

    accepted: int  #: transports connected (after TLS, if any), refused ones included
    active: int  #: accepted and not dead yet (handshaking or established)
    deaths: dict[str, int]  #: deaths of established connections, by reason
    #: connections that died before their handshake completed, by reason (a peer that is
    #: not pulsewire, or never sent its HELLO: ``timeout``; a port scan or health check: ``eof``)
    handshake_failures: dict[str, int] = msgspec.field(default_factory=dict)
    #: The server's limits at work (asyncio driver; see ``docs/security.md``):
    refused: int = 0  #: refused at ``max_connections`` with ``CLOSE(OVERLOADED)``
    shed: int = 0  #: closed with ``CLOSE(OVERLOADED)`` to keep within ``inbound_budget``
    max_connections: int | None = None  #: the connection limit in force
    inbound_held: int = 0  #: bytes held for peers now, across every connection
    peak_inbound_held: int = 0  #: the most ``inbound_held`` has been
    accept_failures: int = 0  #: ``accept()`` calls that failed (EMFILE, ENFILE, ...)


class HookRunner(Generic[C]):
    """Runs one listener's handler or hooks for each of its connections, and counts them.

    It is the observer a driver's ``Connection`` tells of its life (``connection_made``,
    ``connection_ready``, ``message_received``, ...). ``log``: where a hook's error goes.
    """

    def __init__(
        self,
        handler: ServerHooks[C] | Callable[[C], Awaitable[None]],
        spawn: Spawn[C],
        log: EventLogger,
    ) -> None:
        self._hooks = handler if isinstance(handler, ServerHooks) else None
        self._handler = None if isinstance(handler, ServerHooks) else handler
        self._overridden = frozenset() if self._hooks is None else self._hooks._overridden
        self._spawn = spawn
        self._log = log
        #: Messages go to the server's ``on_message``, not to ``recv()``.
        self.takes_messages = "on_message" in self._overridden
        self._queues: dict[C, deque[Callable[[], Awaitable[None]]]] = {}
        self._connections: set[C] = set()
        self._accepted = 0
        self._deaths: Counter[str] = Counter()
        self._handshake_failures: Counter[str] = Counter()

    @property
    def connections(self) -> frozenset[C]:
        """Connections accepted and not yet dead (including those still handshaking)."""
        return frozenset(self._connections)

    def stats(self) -> ListenerStats:
        return ListenerStats(
            accepted=self._accepted,
            active=len(self._connections),
            deaths=dict(self._deaths),
            handshake_failures=dict(self._handshake_failures),
        )

    # ------------------------------------------------------------------ the observer

    def connection_made(self, connection: C) -> None:
        """The transport is up (after TLS, if any): the connection counts from now on."""
        self._connections.add(connection)
        self._accepted += 1

    def forget(self, connection: C) -> None:
        """Stop counting ``connection`` as active (the listener refused it): no hook, no
        death of its is counted."""
        self._connections.discard(connection)

    def connection_ready(self, connection: C) -> None:
        handler = self._handler
        if handler is not None:
            self._spawn(connection, lambda: run_handler(handler, connection, self._log))
        self._run_hook(connection, "on_connect", connection)

    def message_received(
        self, connection: C, message: bytes, consumed: Callable[[int], None]
    ) -> None:
        hooks = self._hooks
        assert hooks is not None

        async def deliver() -> None:
            try:
                await hooks.on_message(connection, message)
            finally:
                consumed(len(message))

        self._queue(connection, deliver)

    def connection_suspected(self, connection: C) -> None:
        self._run_hook(connection, "on_suspect", connection)

    def connection_recovered(self, connection: C) -> None:
        self._run_hook(connection, "on_recover", connection)

    def connection_dead(self, connection: C, death: Death) -> None:
        self._connections.discard(connection)
        if connection.negotiated is None:
            self._handshake_failures[death.reason.value] += 1
            return
        self._deaths[death.reason.value] += 1
        # Only connections that reached on_connect get on_dead: hooks come in pairs.
        self._run_hook(connection, "on_dead", connection, death)

    # ------------------------------------------------------------------ internals

    def _run_hook(self, connection: C, name: str, *args: Any) -> None:
        """Run the server's hook ``name``, unless the server left it empty."""
        if name in self._overridden:
            hook = getattr(self._hooks, name)
            self._queue(connection, lambda: hook(*args))

    def _queue(self, connection: C, call: Callable[[], Awaitable[None]]) -> None:
        """Hooks of one connection run one at a time, in the order of their events."""
        queue = self._queues.get(connection)
        if queue is not None:
            queue.append(call)
            return
        self._queues[connection] = deque([call])
        self._spawn(connection, lambda: self._drain(connection))

    async def _drain(self, connection: C) -> None:
        queue = self._queues[connection]
        try:
            while queue:
                await run_guarded(queue.popleft(), connection, self._log)
        finally:
            del self._queues[connection]


async def run_guarded(
    call: Callable[[], Awaitable[None]], connection: HookedConnection, log: EventLogger
) -> None:
    """Run one hook: an error is logged and closes the connection with INTERNAL_ERROR."""
    try:
        await call()
    except ConnectionClosedError:
        pass  # the death is reported through on_dead and the log already
    except Exception:
        log.exception(logevents.HANDLER_ERROR, peer=connection.peer_address)
        if connection.death is None:
            # What it could not deliver is on its death, which peer.dead logs.
            with contextlib.suppress(ConnectionClosedError):
                await connection.close(CloseCode.INTERNAL_ERROR, "handler error")


async def run_handler(
    handler: Callable[[C], Awaitable[None]], connection: C, log: EventLogger
) -> None:
    """Run a handler function; close the connection in order when it returns or raises."""
    code, reason = CloseCode.NORMAL, ""
    try:
        await handler(connection)
    except ConnectionClosedError:
        return
    except Exception:
        log.exception(logevents.HANDLER_ERROR, peer=connection.peer_address)
        code, reason = CloseCode.INTERNAL_ERROR, "handler error"
    if connection.death is None:
        # The handler is done with the connection: close it in order. What could not be
        # delivered is on its death, which peer.dead logs.
        with contextlib.suppress(ConnectionClosedError):
            await connection.close(code, reason)
