"""``Connection``: the user's handle on one live (or dead) pulsewire connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol, final

from pulsewire.asyncio.protocol import PulsewireProtocol
from pulsewire.core.events import (
    Death,
    Died,
    Event,
    HandshakeCompleted,
    MessageReceived,
    PingAnswered,
    Recovered,
    Suspected,
)
from pulsewire.core.frames import CloseCode
from pulsewire.core.states import Reason, State
from pulsewire.driverkit.handle import ConnectionBase, ends_iteration
from pulsewire.driverkit.logs import log_event
from pulsewire.driverkit.sockets import SEND_BUFFER_LIMIT
from pulsewire.errors import (
    ConnectionClosedError,
    LocalClosedError,
    PeerDeadError,
    UsageError,
)

__all__ = ["SEND_BUFFER_LIMIT", "Connection", "ConnectionObserver"]


class ConnectionObserver(Protocol):
    """Who else hears of a connection's life: the listener that accepted it.

    Every call comes from the event loop, in the order of the connection's events.
    """

    #: True: messages go to :meth:`message_received`, and ``recv()`` is not for this
    #: connection's user.
    takes_messages: bool
    #: True: the observer logs connections that die before their handshake completes (a
    #: listener does, at a bounded rate); the connection then does not.
    logs_handshake_failures: bool

    def connection_made(self, connection: Connection) -> None:
        """The transport is connected (after TLS, if any); the handshake starts."""

    def connection_ready(self, connection: Connection) -> None: ...

    def message_received(
        self, connection: Connection, message: bytes, consumed: Callable[[int], None]
    ) -> None:
        """Call ``consumed(len(message))`` once the message is handled: it frees the
        peer's flow-control credit."""

    def connection_suspected(self, connection: Connection) -> None: ...

    def connection_recovered(self, connection: Connection) -> None: ...

    def connection_dead(self, connection: Connection, death: Death) -> None: ...


@final
class Connection(ConnectionBase):
    """One pulsewire connection, as seen from this side.

    Messages are whole ``bytes`` objects: ``await send(b)`` on one side, ``await recv()`` or
    ``async for message in connection`` on the other. Liveness runs by itself: ``state``,
    ``rtt`` and ``stats()`` show it, ``wait_dead()`` waits for the verdict, and every
    operation on a dead connection raises :class:`~pulsewire.PeerDeadError` (or
    :class:`~pulsewire.LocalClosedError` after ``close()``) carrying the :class:`Death`.

    Iteration ends quietly after an orderly close (either side's ``close()``); any other
    death is raised from the loop, so a peer that vanished is never mistaken for one that
    said goodbye. Messages received before the death are still delivered first.

    Nothing sent is lost silently: ``send()`` returns each message's number (from 0), and
    the :class:`~pulsewire.Death` of a connection says which of them the peer confirmed,
    which were handed to the kernel unconfirmed, and hands back the bytes of those never
    sent (``death.unsent``). ``close()`` raises if it could not deliver them all.

    ``async with connection:`` closes it in order on exit: with ``NORMAL``, or
    ``INTERNAL_ERROR`` if the block raised, ``GOING_AWAY`` if it was cancelled. So
    ``async with await pulsewire.connect(...) as connection:`` is the whole life of a
    client connection.

    Connections are made by :func:`~pulsewire.connect`, :func:`~pulsewire.connect_unix`,
    :func:`~pulsewire.wrap_streams`, :func:`~pulsewire.serve` and
    :func:`~pulsewire.serve_unix`.
    """

    _io: PulsewireProtocol

    __slots__ = (
        "_dead_waiter",
        "_drain_waiters",
        "_inbound",
        "_io",
        "_observer",
        "_ping_waiters",
        "_recv_waiter",
        "_state_waiters",
    )

    def __init__(
        self, protocol: PulsewireProtocol, *, observer: ConnectionObserver | None = None
    ) -> None:
        self._io = protocol
        protocol.on_events = self._on_events
        protocol.on_connected = self._connected
        protocol.on_send_progress = self._send_progressed
        self._observer = observer
        self._inbound: deque[bytes] | None = None  # created by the first message
        self._recv_waiter: asyncio.Future[None] | None = None
        self._state_waiters: list[asyncio.Future[None]] | None = None
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._dead_waiter: asyncio.Future[Death] | None = None
        self._ping_waiters: dict[int, asyncio.Future[float]] | None = None

    async def ping(self) -> float:
        """Send a PING now and return its round-trip time in seconds.

        It takes the place of the next scheduled ping. Pings are spaced at least half the
        negotiated interval apart (closer ones count as abuse at the peer): a call that
        comes sooner waits until then. Raises ``PeerDeadError``/``LocalClosedError`` if
        the connection dies first.
        """
        loop = asyncio.get_running_loop()
        while True:
            wait = self._ping_wait()  # the peer's allowance may move while we wait
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        seq = self._session.send_ping(self._io.time())
        waiter: asyncio.Future[float] = loop.create_future()
        if self._ping_waiters is None:
            self._ping_waiters = {}
        self._ping_waiters[seq] = waiter
        self._io.after_input()
        try:
            return await waiter
        finally:
            self._ping_waiters.pop(seq, None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Transport information (``"socket"``, ``"peername"``, ``"sslcontext"``, ...)."""
        transport = self._io.transport
        return default if transport is None else transport.get_extra_info(name, default)

    # ------------------------------------------------------------------ messages

    async def send(self, message: bytes | bytearray | memoryview) -> int:
        """Queue one message and return its number on this connection (0, 1, 2, ... in
        the order of the calls); wait while more than ``SEND_BUFFER_LIMIT`` bytes are queued.

        Returning means pulsewire has the message, not that the peer does: if the
        connection dies, its :class:`~pulsewire.Death` says what became of each number.

        Raises ``TypeError`` for anything but ``bytes``, ``bytearray`` or ``memoryview``;
        ``PeerDeadError``/``LocalClosedError`` if the connection is dead (the message is not
        taken), or dies before the queue drains (the message was taken: it is in
        ``error.death.unsent`` or ``in_doubt``).
        """
        session = self._session
        number = session.send_message(message)
        # Written on the next turn of the loop, together with whatever else is sent in this
        # one: a task sending many small messages makes few large writes.
        self._io.flush_soon()
        while session.pending_send_bytes > SEND_BUFFER_LIMIT:
            if self._drain_waiters is None:
                self._drain_waiters = []
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter
            self._raise_if_dead()
        return number

    async def recv(self) -> bytes:
        """The next message; raises ``ConnectionClosedError`` once dead and drained."""
        while True:
            if self._inbound:
                return self._take()
            self._raise_if_dead()
            if self._observer is not None and self._observer.takes_messages:
                raise UsageError("this server's messages go to on_message(), not recv()")
            if self._recv_waiter is not None:
                raise UsageError("recv() is already being awaited by another task")
            waiter = asyncio.get_running_loop().create_future()
            self._recv_waiter = waiter
            try:
                await waiter
            finally:
                self._recv_waiter = None

    def __aiter__(self) -> Connection:
        """``async for message in connection``: each message, in order (see :meth:`__anext__`)."""
        return self

    async def __anext__(self) -> bytes:
        """The next message. The loop ends quietly after an orderly close (a CLOSE with
        NORMAL from the peer, or this side's ``close()``); any other death is raised
        (``PeerDeadError``), once the messages received before it are delivered."""
        try:
            return await self.recv()
        except ConnectionClosedError as error:
            if ends_iteration(error.death):
                raise StopAsyncIteration from None
            raise

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> Death:
        """Close in order: queued messages go first, then CLOSE; wait for the peer's answer.

        Bounded by the policy's ``close_timeout``, after which the transport is aborted.
        Returns the ``Death`` record (``LOCAL_CLOSE`` unless the peer died first) when every
        message passed to ``send()`` reached the peer (the peer's answer to our CLOSE says
        so, from peers that announce ``Feature.RECEIPTS``). Otherwise raises
        ``LocalClosedError`` (the close timed out) or ``PeerDeadError`` (the peer died
        first), whose ``death`` lists what was not delivered (``unsent``, ``in_doubt``):
        it never returns quietly with messages lost.
        """
        self._begin_close(code, reason)
        return self._closed(await self.wait_dead())

    async def wait_state(self, *states: State) -> State:
        """Wait until the connection is in one of ``states``; return the state it is in.

        Returns at once if it already is; raises ``ConnectionClosedError`` if it dies
        without reaching one of them (unless ``State.DEAD`` is among them).
        """
        if not states:
            raise UsageError("wait_state() needs at least one state")
        while True:
            state = self.state
            if state in states:
                return state
            self._raise_if_dead()
            if self._state_waiters is None:
                self._state_waiters = []
            waiter = asyncio.get_running_loop().create_future()
            self._state_waiters.append(waiter)
            await waiter

    async def wait_dead(self) -> Death:
        """Wait until the connection is dead and return why."""
        death = self.death
        if death is not None:
            return death
        if self._dead_waiter is None:
            self._dead_waiter = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._dead_waiter)

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close in order (see :meth:`close`): ``GOING_AWAY`` if the task was cancelled,
        ``INTERNAL_ERROR`` if the block raised, else ``NORMAL`` (and then raise, as
        :meth:`close` does, if messages were not delivered)."""
        if self.death is not None:
            return
        if exc is None or isinstance(exc, ConnectionClosedError):
            await self.close()  # raises if messages were not delivered
            return
        # The block's own exception matters more; what was not delivered is on the Death.
        with contextlib.suppress(ConnectionClosedError):
            if isinstance(exc, asyncio.CancelledError):
                await self.close(CloseCode.GOING_AWAY, "cancelled")
            else:
                await self.close(CloseCode.INTERNAL_ERROR, type(exc).__name__)

    def close_now(self, code: int, reason: str = "") -> Death:
        """Close at once, without waiting for the peer: CLOSE (with ``code`` and
        ``reason``) goes out ahead of any queued message, and the connection is dead on
        return. Returns the ``Death``: queued messages are in ``death.unsent``.

        For a server that must let a peer go now and tell it why (a server sheds
        connections this way); :meth:`close` lets queued messages go first.
        """
        self._session  # noqa: B018 -- raises if the transport is not connected yet
        self._io.close_now(code, reason)
        death = self.death
        assert death is not None
        return death

    def abort(self) -> None:
        """Drop the connection at once, without a CLOSE (the peer will see RST or EOF).

        Messages already accepted by ``send()`` are handed to the kernel first, best effort
        (what the transport cannot take at once is dropped): abort does not wait on the peer.
        """
        self._io.abort()

    # ------------------------------------------------------------------ internals

    def _take(self) -> bytes:
        assert self._inbound is not None
        data = self._inbound.popleft()
        self._consumed(len(data))
        return data

    def _consumed(self, size: int) -> None:
        """The application is done with a received message: the peer may send more."""
        session = self._io.session
        if session is not None:
            session.message_consumed(size)
            self._io.flush_soon()

    def _wake(self, future: asyncio.Future[None] | None) -> None:
        if future is not None and not future.done():
            future.set_result(None)

    def _state_changed(self) -> None:
        waiters, self._state_waiters = self._state_waiters, None
        for waiter in waiters or ():
            self._wake(waiter)

    # Called by the protocol ------------------------------------------------------------

    def _connected(self) -> None:
        if self._observer is not None:
            self._observer.connection_made(self)

    def _on_events(self, events: Sequence[Event]) -> None:
        for event in events:
            if isinstance(event, MessageReceived):
                self._message(event.data)
            elif isinstance(event, HandshakeCompleted):
                self._handshake(event)
            elif isinstance(event, Suspected):
                self._suspected(event)
            elif isinstance(event, Recovered):
                self._recovered(event)
            elif isinstance(event, PingAnswered):
                self._ping_answered(event)
            elif isinstance(event, Died):
                self._died(event)

    def _send_progressed(self) -> None:
        """Release ``send()`` callers once the queue is short enough (or the end came)."""
        waiters = self._drain_waiters
        if not waiters:
            return
        session = self._io.session
        if (
            session is None
            or session.death is not None
            or (session.pending_send_bytes <= SEND_BUFFER_LIMIT)
        ):
            self._drain_waiters = None
            for waiter in waiters:
                self._wake(waiter)

    def _ping_answered(self, event: PingAnswered) -> None:
        waiter = None if self._ping_waiters is None else self._ping_waiters.get(event.seq)
        if waiter is not None and not waiter.done():
            waiter.set_result(event.rtt)

    def _message(self, data: bytes) -> None:
        observer = self._observer
        if observer is not None and observer.takes_messages:
            observer.message_received(self, data, self._consumed)
            return
        inbound = self._inbound
        if inbound is None:
            inbound = self._inbound = deque()
        inbound.append(data)
        self._wake(self._recv_waiter)

    def _log(self, event: Event) -> None:
        log_event(
            self._io.log,
            event,
            self.peer_address,
            handshake_done=self.negotiated is not None,
            initiator=self._io.initiator,
        )

    def _handshake(self, event: HandshakeCompleted) -> None:
        self._log(event)
        self._state_changed()
        if self._observer is not None:
            self._observer.connection_ready(self)

    def _suspected(self, event: Suspected) -> None:
        self._log(event)
        self._state_changed()
        if self._observer is not None:
            self._observer.connection_suspected(self)

    def _recovered(self, event: Recovered) -> None:
        self._log(event)
        self._state_changed()
        if self._observer is not None:
            self._observer.connection_recovered(self)

    def _died(self, event: Died) -> None:
        observer = self._observer
        if not (
            self.negotiated is None and observer is not None and observer.logs_handshake_failures
        ):
            self._log(event)
        death = event.death
        self._wake_all(death)
        if self._observer is not None:
            self._observer.connection_dead(self, death)

    def _wake_all(self, death: Death) -> None:
        self._wake(self._recv_waiter)
        for waiter in (self._ping_waiters or {}).values():
            if not waiter.done():
                closed = LocalClosedError if death.reason is Reason.LOCAL_CLOSE else PeerDeadError
                waiter.set_exception(closed(death))
        self._send_progressed()
        self._state_changed()
        if self._dead_waiter is not None and not self._dead_waiter.done():
            self._dead_waiter.set_result(death)
