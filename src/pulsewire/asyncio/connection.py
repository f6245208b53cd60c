"""``Connection``: the user's handle on one live (or dead) pulsewire connection."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, final

import structlog

from pulsewire import logevents
from pulsewire.core.events import Death, HandshakeCompleted, Source
from pulsewire.core.frames import CloseCode
from pulsewire.core.policy import Limits, Policy
from pulsewire.core.session import Negotiated, Session
from pulsewire.core.states import Reason, State
from pulsewire.core.stats import SessionStats
from pulsewire.errors import (
    ConnectionClosedError,
    LocalClosedError,
    PeerDeadError,
    UsageError,
)

if TYPE_CHECKING:
    from pulsewire.asyncio.protocol import PulsewireProtocol
    from pulsewire.asyncio.server import Server
    from pulsewire.kernel import KeepaliveReport

__all__ = ["SEND_BUFFER_LIMIT", "Connection"]

_log = structlog.get_logger("pulsewire")

#: ``send()`` returns once no more than this many bytes wait in user space.
SEND_BUFFER_LIMIT = 1024 * 1024

_QUIET_REASONS = (Reason.LOCAL_CLOSE, Reason.EOF)


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in str(host) else f"{host}:{address[1]}"
    return str(address) if address else "?"


@final
class Connection:
    """One pulsewire connection, as seen from this side.

    Messages are whole ``bytes`` objects: ``await send(b)`` on one side, ``await recv()`` or
    ``async for message in connection`` on the other. Liveness runs by itself: ``state``,
    ``rtt`` and ``stats()`` show it, ``wait_dead()`` waits for the verdict, and every
    operation on a dead connection raises :class:`~pulsewire.PeerDeadError` (or
    :class:`~pulsewire.LocalClosedError` after ``close()``) carrying the :class:`Death`.

    Iteration ends quietly after an orderly close (either side's ``close()``); any other
    death is raised from the loop, so a peer that vanished is never mistaken for one that
    said goodbye. Messages received before the death are still delivered first.
    """

    __slots__ = (
        "_dead_waiter",
        "_drain_waiters",
        "_hook_queue",
        "_hook_task",
        "_hooks",
        "_hooks_running",
        "_inbound",
        "_on_dead_callback",
        "_on_ready_callback",
        "_protocol",
        "_ready",
        "_recv_waiter",
        "_state_waiters",
        "_transport",
        "kernel_report",
        "limits",
        "name",
        "peer_address",
        "policy",
    )

    def __init__(
        self,
        *,
        policy: Policy,
        limits: Limits,
        name: str = "",
        hooks: Server | None = None,
        on_ready: Callable[[Connection], None] | None = None,
        on_dead: Callable[[Connection, Death], None] | None = None,
    ) -> None:
        self.policy = policy
        self.limits = limits
        self.name = name
        self.peer_address = "?"
        #: What the kernel applied of ``policy.kernel_options()`` (None: nothing asked, or
        #: not a TCP socket).
        self.kernel_report: KeepaliveReport | None = None
        self._hooks = hooks
        self._on_ready_callback = on_ready
        self._on_dead_callback = on_dead
        self._protocol: PulsewireProtocol | None = None
        self._transport: asyncio.Transport | None = None
        self._inbound: deque[bytes] | None = None  # created by the first message
        self._recv_waiter: asyncio.Future[None] | None = None
        self._state_waiters: list[asyncio.Future[None]] | None = None
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._dead_waiter: asyncio.Future[Death] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._hook_queue: deque[Callable[[], Awaitable[None]]] | None = None
        self._hooks_running = False
        self._hook_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.peer_address} {self.state.value}>"

    # ------------------------------------------------------------------ queries

    @property
    def _session(self) -> Session:
        protocol = self._protocol
        if protocol is None or protocol.session is None:
            raise UsageError("the connection is not established yet")
        return protocol.session

    @property
    def state(self) -> State:
        """HANDSHAKE, ALIVE, SUSPECT, CLOSING or DEAD."""
        protocol = self._protocol
        if protocol is None or protocol.session is None:
            return State.HANDSHAKE
        return protocol.session.state

    @property
    def death(self) -> Death | None:
        """Why the connection died, once it has."""
        protocol = self._protocol
        return None if protocol is None or protocol.session is None else protocol.session.death

    @property
    def rtt(self) -> float | None:
        """Smoothed round-trip time in seconds (RFC 6298), ``None`` before the first PONG."""
        return self._session.rtt.srtt

    @property
    def negotiated(self) -> Negotiated | None:
        """The intervals settled by the handshake, and the peer's HELLO."""
        return self._session.negotiated

    @property
    def peer_name(self) -> str:
        negotiated = self._session.negotiated
        return "" if negotiated is None else negotiated.peer.name

    def stats(self) -> SessionStats:
        """A frozen snapshot of this connection's counters and RTT figures."""
        session = self._session  # raises UsageError before the connection is established
        assert self._protocol is not None
        return session.stats(self._protocol.scheduler.time())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Transport information (``"socket"``, ``"peername"``, ``"sslcontext"``, ...)."""
        return default if self._transport is None else self._transport.get_extra_info(name, default)

    # ------------------------------------------------------------------ messages

    async def send(self, message: bytes | bytearray | memoryview) -> None:
        """Queue one message; wait while more than ``SEND_BUFFER_LIMIT`` bytes are queued.

        Raises ``PeerDeadError``/``LocalClosedError`` if the connection is dead, or dies
        before the queue drains (the message may then not have been delivered).
        """
        if isinstance(message, str):
            raise TypeError("send() takes bytes; encode text first")
        protocol = self._protocol
        session = self._session if protocol is None else protocol.session
        if session is None:
            session = self._session  # raises: not established yet
        session.send_message(message)
        assert protocol is not None
        # Written on the next turn of the loop, together with whatever else is sent in this
        # one: a task sending many small messages makes few large writes.
        if not protocol._flush_scheduled:
            protocol.flush_soon()
        while session.pending_send_bytes > SEND_BUFFER_LIMIT:
            if self._drain_waiters is None:
                self._drain_waiters = []
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter
            self._raise_if_dead()

    async def recv(self) -> bytes:
        """The next message; raises ``ConnectionClosedError`` once dead and drained."""
        while True:
            if self._inbound:
                return self._take()
            self._raise_if_dead()
            if self._hooks is not None and self._hooks._takes_messages:
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
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosedError as error:
            if error.death.clean or error.death.reason is Reason.LOCAL_CLOSE:
                raise StopAsyncIteration from None
            raise

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> Death:
        """Close in order: queued messages go first, then CLOSE; wait for the peer's answer.

        Bounded by the policy's ``close_timeout``, after which the transport is aborted.
        Returns the ``Death`` record (``LOCAL_CLOSE`` unless the peer died first).
        """
        session = self._session
        if session.death is None and session.state is not State.CLOSING:
            _log.info(
                logevents.CONNECTION_CLOSE, peer=self.peer_address, code=int(code), why=reason
            )
            assert self._protocol is not None
            session.close(self._protocol.scheduler.time(), code, reason)
            self._protocol.after_input()
        return await self.wait_dead()

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

    def _state_changed(self) -> None:
        waiters, self._state_waiters = self._state_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    async def wait_dead(self) -> Death:
        """Wait until the connection is dead and return why."""
        death = self.death
        if death is not None:
            return death
        if self._dead_waiter is None:
            self._dead_waiter = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._dead_waiter)

    def abort(self) -> None:
        """Drop the connection at once, without a CLOSE (the peer will see RST or EOF).

        Messages already accepted by ``send()`` are handed to the kernel first, best effort
        (what the transport cannot take at once is dropped): abort does not wait on the peer.
        """
        protocol = self._protocol
        if protocol is not None and protocol.session is not None:
            protocol.flush()
            # The verdict is ours: record it before the transport reports a bare EOF, which
            # would be mistaken for the peer closing (Death(EOF, KERNEL)).
            protocol.session.connection_lost(
                Reason.LOCAL_CLOSE, protocol.scheduler.time(), source=Source.LOCAL
            )
            protocol.after_input()  # dispatches the death, which aborts the transport
        if self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------------------ internals

    def _take(self) -> bytes:
        assert self._inbound is not None
        data = self._inbound.popleft()
        protocol = self._protocol
        if protocol is not None and protocol.session is not None:
            protocol.session.message_consumed(len(data))
            if protocol.session.has_output:
                protocol.flush_soon()
        return data

    def _raise_if_dead(self) -> None:
        death = self.death
        if death is not None:
            raise (LocalClosedError if death.reason is Reason.LOCAL_CLOSE else PeerDeadError)(death)

    async def _wait_ready(self) -> None:
        """Wait for the handshake; raise with the death if it never completes."""
        if self.state is State.HANDSHAKE or self._protocol is None:
            if self._ready is None:
                self._ready = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._ready)
        self._raise_if_dead()

    # Called by the protocol ------------------------------------------------------

    def _attach(self, protocol: PulsewireProtocol, transport: asyncio.Transport) -> None:
        self._protocol = protocol
        self._transport = transport
        self.peer_address = _format_address(transport.get_extra_info("peername"))

    def _on_handshake(self, event: HandshakeCompleted) -> None:
        _log.info(
            logevents.PEER_CONNECTED,
            peer=self.peer_address,
            name=event.peer_name,
            ping_interval=event.ping_interval,
            peer_ping_interval=event.peer_ping_interval,
        )
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        self._state_changed()
        if self._on_ready_callback is not None:
            self._on_ready_callback(self)
        if self._hooks is not None:
            self._run_hook("on_connect", self)

    def _on_message(self, data: bytes) -> None:
        hooks = self._hooks
        if hooks is not None and hooks._takes_messages:
            self._queue_call(self._message_hook, data)
            return
        inbound = self._inbound
        if inbound is None:
            inbound = self._inbound = deque()
        inbound.append(data)
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _message_hook(self, data: bytes) -> None:
        assert self._hooks is not None
        try:
            await self._hooks.on_message(self, data)
        finally:
            protocol = self._protocol
            if protocol is not None and protocol.session is not None:
                protocol.session.message_consumed(len(data))
                if protocol.session.has_output:
                    protocol.flush_soon()

    def _on_suspect(self, silence: float, cause: str) -> None:
        _log.warning(
            logevents.PEER_SUSPECT, peer=self.peer_address, silence=round(silence, 4), cause=cause
        )
        self._state_changed()
        if self._hooks is not None:
            self._run_hook("on_suspect", self)

    def _on_recover(self, silence: float) -> None:
        _log.info(logevents.PEER_RECOVERED, peer=self.peer_address, silence=round(silence, 4))
        self._state_changed()
        if self._hooks is not None:
            self._run_hook("on_recover", self)

    def _on_dead(self, death: Death) -> None:
        log = _log.info if death.reason in _QUIET_REASONS else _log.warning
        log(
            logevents.PEER_DEAD,
            peer=self.peer_address,
            reason=death.reason.value,
            source=death.source.value,
            silence=round(death.silence, 4),
            last_rtt=death.last_rtt,
            close_code=death.close_code,
            error=None if death.error is None else str(death.error),
        )
        self._wake_all(death)
        if self._on_dead_callback is not None:
            self._on_dead_callback(self, death)
        if self._hooks is not None and self._session.negotiated is not None:
            # Only connections that reached on_connect get on_dead: hooks come in pairs.
            self._run_hook("on_dead", self, death)

    def _transport_lost(self) -> None:
        death = self.death
        if death is not None:
            self._wake_all(death)

    def _wake_all(self, death: Death) -> None:
        for future in (self._recv_waiter, self._ready):
            if future is not None and not future.done():
                future.set_result(None)
        self._send_progress(force=True)
        self._state_changed()
        if self._dead_waiter is not None and not self._dead_waiter.done():
            self._dead_waiter.set_result(death)

    def _send_progress(self, force: bool = False) -> None:
        """Release ``send()`` callers once the queue is short enough (or the end came)."""
        waiters = self._drain_waiters
        if not waiters:
            return
        protocol = self._protocol
        session = None if protocol is None else protocol.session
        if force or session is None or session.pending_send_bytes <= SEND_BUFFER_LIMIT:
            self._drain_waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _run_hook(self, name: str, *args: Any) -> None:
        """Run the server's hook ``name``, unless the server left it empty."""
        hooks = self._hooks
        if hooks is not None and name in hooks._overridden:
            self._queue_call(getattr(hooks, name), *args)

    def _queue_call(self, hook: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Hooks of one connection run one at a time, in the order of their events."""
        if self._hook_queue is None:
            self._hook_queue = deque()
        self._hook_queue.append(lambda: hook(*args))
        if not self._hooks_running:
            self._hooks_running = True
            # Keep a reference: the loop holds tasks only weakly.
            self._hook_task = asyncio.get_running_loop().create_task(self._drain_hooks())

    async def _drain_hooks(self) -> None:
        queue = self._hook_queue
        assert queue is not None
        try:
            while queue:
                call = queue.popleft()
                try:
                    await call()
                except ConnectionClosedError:
                    pass  # the death is reported through on_dead and the log already
                except Exception:
                    _log.exception(logevents.HANDLER_ERROR, peer=self.peer_address)
                    if self.death is None:
                        self._start_close(CloseCode.INTERNAL_ERROR, "handler error")
        finally:
            self._hooks_running = False
            self._hook_task = None

    def _start_close(self, code: int, reason: str) -> None:
        protocol = self._protocol
        if protocol is not None and protocol.session is not None:
            protocol.session.close(protocol.scheduler.time(), code, reason)
            protocol.after_input()
