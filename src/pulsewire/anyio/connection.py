"""``Connection``: the user's handle on one pulsewire connection over an anyio stream."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, final

import anyio
from anyio import TypedAttributeProvider

from pulsewire.anyio.attributes import PulsewireAttribute
from pulsewire.anyio.driver import StreamDriver
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
from pulsewire.core.states import State
from pulsewire.driverkit.handle import ConnectionBase, ends_iteration
from pulsewire.driverkit.logs import log_event
from pulsewire.driverkit.sockets import SEND_BUFFER_LIMIT
from pulsewire.errors import ConnectionClosedError, UsageError

__all__ = ["Connection", "ConnectionObserver"]


class ConnectionObserver(Protocol):
    """Who else hears of a connection's life: the listener that accepted it."""

    #: True: messages go to :meth:`message_received`, and ``recv()`` is not for this
    #: connection's user.
    takes_messages: bool

    def connection_ready(self, connection: Connection) -> None: ...

    def message_received(
        self, connection: Connection, message: bytes, consumed: Callable[[int], None]
    ) -> None: ...

    def connection_suspected(self, connection: Connection) -> None: ...

    def connection_recovered(self, connection: Connection) -> None: ...

    def connection_dead(self, connection: Connection, death: Death) -> None: ...


@final
class Connection(ConnectionBase, TypedAttributeProvider):
    """One pulsewire connection over an anyio byte stream, as seen from this side.

    The same surface as the asyncio driver's :class:`pulsewire.Connection`: whole
    ``bytes`` messages (``await send(b)``, ``await recv()``, ``async for``), ``state``,
    ``rtt``, ``ping()``, ``stats()``, ``wait_dead()``, ``close()``, ``abort()``; every
    operation on a dead connection raises :class:`~pulsewire.PeerDeadError` (or
    :class:`~pulsewire.LocalClosedError` after ``close()``) carrying the :class:`Death`.
    Iteration ends quietly after an orderly close and raises for any other death.

    It is also an anyio :class:`~anyio.TypedAttributeProvider`: ``connection.extra(...)``
    answers the :class:`PulsewireAttribute`\\ s and, passed through, the wrapped stream's
    own (``SocketAttribute.raw_socket``, ``TLSAttribute.peer_certificate``, ...).

    Connections are made by :func:`~pulsewire.anyio.connect`,
    :func:`~pulsewire.anyio.wrap` and :class:`~pulsewire.anyio.Listener`; they live in
    the task group of whoever made them.
    """

    _io: StreamDriver

    __slots__ = (
        "_changed",
        "_dead",
        "_drained",
        "_inbound",
        "_io",
        "_observer",
        "_pings",
        "_received",
    )

    def __init__(self, driver: StreamDriver, *, observer: ConnectionObserver | None = None) -> None:
        self._io = driver
        driver.on_events = self._on_events
        driver.on_send_progress = self._send_progressed
        self._observer = observer
        self._inbound: deque[bytes] | None = None  # created by the first message
        self._received: anyio.Event | None = None  # recv() waits on it
        self._changed: anyio.Event | None = None  # state waiters wait on it
        self._drained: anyio.Event | None = None  # send() waits on it
        self._dead = anyio.Event()
        #: ping() callers by sequence number: the event, and the RTT once answered.
        self._pings: dict[int, _PingWaiter] | None = None

    async def run(self) -> None:
        """Drive the connection until it is dead and its stream closed (the maker runs it)."""
        await self._io.run()

    # ------------------------------------------------------------------ queries

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """anyio's typed attributes: the stream's own (``SocketAttribute`` and, over TLS,
        ``TLSAttribute``) and :class:`PulsewireAttribute`'s."""
        return {
            **self._io.stream.extra_attributes,
            PulsewireAttribute.rtt: lambda: self.rtt,
            PulsewireAttribute.state: lambda: self.state,
            PulsewireAttribute.death: lambda: self.death,
            PulsewireAttribute.negotiated: lambda: self.negotiated,
            PulsewireAttribute.policy: lambda: self.policy,
            PulsewireAttribute.kernel_report: lambda: self.kernel_report,
        }

    async def ping(self) -> float:
        """Send a PING now and return its round-trip time in seconds.

        It takes the place of the next scheduled ping. Pings are spaced at least half the
        negotiated interval apart (closer ones count as abuse at the peer): a call that
        comes sooner waits until then. Raises ``PeerDeadError``/``LocalClosedError`` if
        the connection dies first.
        """
        while True:
            wait = self._ping_wait()  # the peer's allowance may move while we wait
            if wait <= 0:
                break
            await anyio.sleep(wait)
        seq = self._session.send_ping(self._io.time())
        waiter = _PingWaiter()
        if self._pings is None:
            self._pings = {}
        self._pings[seq] = waiter
        self._io.after_input()
        try:
            await waiter.answered.wait()
        finally:
            del self._pings[seq]
        if waiter.rtt is None:  # woken by the death
            self._raise_if_dead()
        assert waiter.rtt is not None
        return waiter.rtt

    # ------------------------------------------------------------------ messages

    async def send(self, message: bytes | bytearray | memoryview) -> None:
        """Queue one message; wait while more than ``SEND_BUFFER_LIMIT`` bytes are queued.

        Raises ``PeerDeadError``/``LocalClosedError`` if the connection is dead, or dies
        before the queue drains (the message may then not have been delivered).
        """
        if isinstance(message, str):
            raise TypeError("send() takes bytes; encode text first")
        session = self._session
        session.send_message(message)
        self._io.after_input()
        while session.pending_send_bytes > SEND_BUFFER_LIMIT:
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()
            self._raise_if_dead()

    async def recv(self) -> bytes:
        """The next message; raises ``ConnectionClosedError`` once dead and drained."""
        while True:
            if self._inbound:
                return self._take()
            self._raise_if_dead()
            if self._observer is not None and self._observer.takes_messages:
                raise UsageError("this server's messages go to on_message(), not recv()")
            if self._received is not None:
                raise UsageError("recv() is already being awaited by another task")
            self._received = received = anyio.Event()
            try:
                await received.wait()
            finally:
                self._received = None

    def __aiter__(self) -> Connection:
        """``async for message in connection``: each message, until the connection closes
        cleanly (an unclean death raises, as :meth:`recv` does)."""
        return self

    async def __anext__(self) -> bytes:
        """The next message; ``StopAsyncIteration`` after a clean close."""
        try:
            return await self.recv()
        except ConnectionClosedError as error:
            if ends_iteration(error.death):
                raise StopAsyncIteration from None
            raise

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> Death:
        """Close in order: queued messages go first, then CLOSE; wait for the peer's answer.

        Bounded by the policy's ``close_timeout``, after which the stream is dropped.
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
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    async def wait_dead(self) -> Death:
        """Wait until the connection is dead and return why."""
        await self._dead.wait()
        death = self.death
        assert death is not None
        return death

    def abort(self) -> None:
        """Drop the connection at once, without a CLOSE (the peer sees EOF or RST).

        Messages ``send()`` accepted and not yet written are dropped.
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
            self._io.after_input()

    def _state_changed(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    # Called by the driver --------------------------------------------------------------

    def _on_events(self, events: Sequence[Event]) -> None:
        observer = self._observer
        for event in events:
            if isinstance(event, MessageReceived):
                self._message(event.data)
                continue
            if isinstance(event, PingAnswered):
                self._ping_answered(event)  # an RTT sample, already in rtt and stats()
                continue
            log_event(
                self._io.log,
                event,
                self.peer_address,
                handshake_done=self.negotiated is not None,
                initiator=self._io.initiator,
            )
            self._state_changed()
            if isinstance(event, HandshakeCompleted):
                if observer is not None:
                    observer.connection_ready(self)
            elif isinstance(event, Suspected):
                if observer is not None:
                    observer.connection_suspected(self)
            elif isinstance(event, Recovered):
                if observer is not None:
                    observer.connection_recovered(self)
            elif isinstance(event, Died):
                self._wake_all()
                if observer is not None:
                    observer.connection_dead(self, event.death)

    def _send_progressed(self) -> None:
        """Release ``send()`` callers once the queue is short enough (or the end came)."""
        drained = self._drained
        if drained is None:
            return
        session = self._io.session
        if (
            session is None
            or session.death is not None
            or session.pending_send_bytes <= SEND_BUFFER_LIMIT
        ):
            self._drained = None
            drained.set()

    def _ping_answered(self, event: PingAnswered) -> None:
        waiter = None if self._pings is None else self._pings.get(event.seq)
        if waiter is not None:
            waiter.rtt = event.rtt
            waiter.answered.set()

    def _message(self, data: bytes) -> None:
        observer = self._observer
        if observer is not None and observer.takes_messages:
            observer.message_received(self, data, self._consumed)
            return
        inbound = self._inbound
        if inbound is None:
            inbound = self._inbound = deque()
        inbound.append(data)
        if self._received is not None:
            self._received.set()

    def _wake_all(self) -> None:
        if self._received is not None:
            self._received.set()
        self._send_progressed()
        for waiter in (self._pings or {}).values():
            waiter.answered.set()
        self._dead.set()


class _PingWaiter:
    """One ``ping()`` call waiting for its PONG: set on the answer, or on the death."""

    __slots__ = ("answered", "rtt")

    def __init__(self) -> None:
        self.answered = anyio.Event()
        self.rtt: float | None = None
