"""``Connection``: the user's handle on one pulsewire connection over an anyio stream."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, final

import anyio
from anyio import TypedAttributeProvider

from pulsewire import logevents
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
from pulsewire.core.policy import Limits, Policy
from pulsewire.core.session import Negotiated, Session
from pulsewire.core.states import Reason, State
from pulsewire.core.stats import SessionStats
from pulsewire.driverkit.logs import log_event
from pulsewire.driverkit.sockets import SEND_BUFFER_LIMIT
from pulsewire.errors import ConnectionClosedError, LocalClosedError, PeerDeadError, UsageError
from pulsewire.kernel import KeepaliveReport

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
class Connection(TypedAttributeProvider):
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

    __slots__ = (
        "_changed",
        "_dead",
        "_drained",
        "_driver",
        "_inbound",
        "_observer",
        "_pings",
        "_received",
    )

    def __init__(self, driver: StreamDriver, *, observer: ConnectionObserver | None = None) -> None:
        self._driver = driver
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

    def __repr__(self) -> str:
        return f"<Connection {self.peer_address} {self.state.value}>"

    async def run(self) -> None:
        """Drive the connection until it is dead and its stream closed (the maker runs it)."""
        await self._driver.run()

    # ------------------------------------------------------------------ queries

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """anyio's typed attributes: the stream's own (``SocketAttribute`` and, over TLS,
        ``TLSAttribute``) and :class:`PulsewireAttribute`'s."""
        return {
            **self._driver.stream.extra_attributes,
            PulsewireAttribute.rtt: lambda: self.rtt,
            PulsewireAttribute.state: lambda: self.state,
            PulsewireAttribute.death: lambda: self.death,
            PulsewireAttribute.negotiated: lambda: self.negotiated,
            PulsewireAttribute.policy: lambda: self.policy,
            PulsewireAttribute.kernel_report: lambda: self.kernel_report,
        }

    @property
    def policy(self) -> Policy:
        """The policy this side watches its peer with."""
        return self._driver.policy

    @property
    def limits(self) -> Limits:
        """The limits this side enforces on what it receives."""
        return self._driver.limits

    @property
    def name(self) -> str:
        """This side's name, sent to the peer in HELLO."""
        return self._driver.name

    @property
    def peer_address(self) -> str:
        """The peer's address as ``host:port``, a Unix path, or ``?`` (memory streams)."""
        return self._driver.peer_address

    @property
    def kernel_report(self) -> KeepaliveReport | None:
        """What the kernel applied of the socket options (None: nothing asked, or not TCP)."""
        return self._driver.kernel_report

    @property
    def state(self) -> State:
        """HANDSHAKE, ALIVE, SUSPECT, CLOSING or DEAD."""
        session = self._driver.session
        return State.HANDSHAKE if session is None else session.state

    @property
    def death(self) -> Death | None:
        """Why the connection died, once it has."""
        session = self._driver.session
        return None if session is None else session.death

    @property
    def rtt(self) -> float | None:
        """Smoothed round-trip time in seconds (RFC 6298), ``None`` before the first PONG.
        :meth:`ping` measures one on demand."""
        session = self._driver.session
        return None if session is None else session.rtt.srtt

    async def ping(self) -> float:
        """Send a PING now and return its round-trip time in seconds.

        It takes the place of the next scheduled ping. Pings are spaced at least half the
        negotiated interval apart (closer ones count as abuse at the peer): a call that
        comes sooner waits until then. Raises ``PeerDeadError``/``LocalClosedError`` if
        the connection dies first.
        """
        while True:
            session = self._session
            self._raise_if_dead()
            wait = session.ping_allowed_at() - self._driver.time()
            if wait <= 0 or session.negotiated is None:  # before the handshake: send_ping says
                break
            await anyio.sleep(wait)
        seq = session.send_ping(self._driver.time())
        waiter = _PingWaiter()
        if self._pings is None:
            self._pings = {}
        self._pings[seq] = waiter
        self._driver.after_input()
        try:
            await waiter.answered.wait()
        finally:
            del self._pings[seq]
        if waiter.rtt is None:  # woken by the death
            self._raise_if_dead()
        assert waiter.rtt is not None
        return waiter.rtt

    @property
    def negotiated(self) -> Negotiated | None:
        """The intervals settled by the handshake, and the peer's HELLO."""
        session = self._driver.session
        return None if session is None else session.negotiated

    @property
    def peer_name(self) -> str:
        """The name the peer sent in its HELLO ("" before the handshake)."""
        negotiated = self.negotiated
        return "" if negotiated is None else negotiated.peer.name

    def stats(self) -> SessionStats:
        """A frozen snapshot of this connection's counters and RTT figures."""
        return self._session.stats(self._driver.time())

    @property
    def _session(self) -> Session:
        session = self._driver.session
        if session is None:
            raise UsageError("the connection is not running yet")
        return session

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
        self._driver.after_input()
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
            if error.death.clean or error.death.reason is Reason.LOCAL_CLOSE:
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
        session = self._session
        if session.death is None and session.state is not State.CLOSING:
            self._driver.log.info(
                logevents.CONNECTION_CLOSE, peer=self.peer_address, code=int(code), why=reason
            )
            session.close(self._driver.time(), code, reason)
            self._driver.after_input()
        death = await self.wait_dead()
        if death.undelivered:
            self._raise_if_dead()
        return death

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
        self._driver.abort()

    # ------------------------------------------------------------------ internals

    def _take(self) -> bytes:
        assert self._inbound is not None
        data = self._inbound.popleft()
        self._consumed(len(data))
        return data

    def _consumed(self, size: int) -> None:
        """The application is done with a received message: the peer may send more."""
        session = self._driver.session
        if session is not None:
            session.message_consumed(size)
            self._driver.after_input()

    def _raise_if_dead(self) -> None:
        death = self.death
        if death is not None:
            raise (LocalClosedError if death.reason is Reason.LOCAL_CLOSE else PeerDeadError)(death)

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
                self._driver.log,
                event,
                self.peer_address,
                handshake_done=self.negotiated is not None,
                initiator=self._driver.initiator,
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
        session = self._driver.session
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
