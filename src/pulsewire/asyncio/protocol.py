"""The asyncio protocol: moves bytes between a transport and a sans-I/O ``Session``.

It follows the session's driver contract (see :mod:`pulsewire.core.session`): after every
input it writes what the session has to send, hands the events to the ``Connection`` and
registers the session's deadline with the loop-wide scheduler. It holds no timer and no
task of its own.

Writing: control frames are written at once; DATA only while the transport is not paused
and at most ``WRITE_BUDGET`` bytes per turn of the loop, so a 50 MB message is cut into
turns between which reads, PONGs and other connections get their share.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import weakref
from typing import TYPE_CHECKING, cast

import structlog

from pulsewire import logevents
from pulsewire.asyncio.scheduler import DeadlineScheduler, Tick
from pulsewire.core.events import (
    Died,
    Event,
    HandshakeCompleted,
    MessageReceived,
    Recovered,
    Source,
    Suspected,
)
from pulsewire.core.frames import HEARTBEAT_FRAME_SIZE
from pulsewire.core.liveness import EPSILON
from pulsewire.core.session import Session
from pulsewire.core.states import Reason
from pulsewire.errors import PolicyError
from pulsewire.kernel import apply_keepalive

if TYPE_CHECKING:
    from pulsewire.asyncio.connection import Connection

__all__ = ["WRITE_BUDGET", "PulsewireProtocol", "reason_for_error"]

_log = structlog.get_logger("pulsewire")

#: DATA bytes handed to the transport per turn of the loop.
WRITE_BUDGET = 256 * 1024
#: Size of the read buffer shared by every connection of a loop (reads are synchronous).
READ_BUFFER_SIZE = 64 * 1024

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
_RESET = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ECONNREFUSED}


def reason_for_error(error: BaseException | None) -> tuple[Reason, Source]:
    """Map what the transport reported to a death reason: the kernel is the source."""
    if error is None:
        return Reason.EOF, Source.KERNEL
    code = getattr(error, "errno", None)
    if isinstance(error, ConnectionResetError | BrokenPipeError) or code in _RESET:
        return Reason.RESET, Source.KERNEL
    if code in _UNREACHABLE:
        return Reason.UNREACHABLE, Source.KERNEL
    if isinstance(error, TimeoutError) or code == errno.ETIMEDOUT:
        return Reason.TIMEOUT, Source.KERNEL
    return Reason.RESET, Source.KERNEL


class _SharedReadBuffer:
    """One read buffer per scheduler: asyncio calls get_buffer and buffer_updated back to back."""

    __slots__ = ("buffer", "heartbeat", "view")

    def __init__(self) -> None:
        self.buffer = bytearray(READ_BUFFER_SIZE)
        self.view = memoryview(self.buffer)
        #: The first HEARTBEAT_FRAME_SIZE bytes: a heartbeat read is parsed without a slice.
        self.heartbeat = self.view[:HEARTBEAT_FRAME_SIZE]


_read_buffers: weakref.WeakKeyDictionary[DeadlineScheduler, _SharedReadBuffer] = (
    weakref.WeakKeyDictionary()
)


class _ProtocolHeartbeatFields:
    """The fields of a :class:`PulsewireProtocol` that an idle heartbeat touches.

    In a base class so that they lie right after the object header, in one cache line
    when the object starts on one (CPython sorts a class's own slots by name: see
    ``pulsewire.core.session._SessionHeartbeatFields``).
    """

    __slots__ = ("_read", "scheduled_in", "scheduler", "session", "transport")


class PulsewireProtocol(_ProtocolHeartbeatFields, asyncio.BufferedProtocol):
    """Transport callbacks for one connection; the user-facing side is ``Connection``."""

    __slots__ = ("_flush_scheduled", "_initiator", "_writing_paused", "connection")

    def __init__(
        self, connection: Connection, scheduler: DeadlineScheduler, *, initiator: bool
    ) -> None:
        self.connection = connection
        self._initiator = initiator
        self.scheduler = scheduler
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self.scheduled_in: Tick | None = None
        self._writing_paused = False
        self._flush_scheduled = False
        shared = _read_buffers.get(scheduler)
        if shared is None:
            shared = _read_buffers[scheduler] = _SharedReadBuffer()
        self._read = shared

    # ------------------------------------------------------------ transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        connection = self.connection
        self.session = Session(
            connection.policy,
            connection.limits,
            now=self.scheduler.time(),
            name=connection.name,
            initiator=self._initiator,
        )
        connection._attach(self, transport)
        if not self._apply_kernel_options(transport):
            return
        self.after_input()

    def _apply_kernel_options(self, transport: asyncio.Transport) -> bool:
        """Set the policy's kernel options on a TCP socket; False if that failed (strict)."""
        options = self.connection.policy.kernel_options()
        sock = transport.get_extra_info("socket")
        if options is None or sock is None or sock.type != socket.SOCK_STREAM:
            return True
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True  # Unix sockets have no keepalive or user timeout
        try:
            self.connection.kernel_report = apply_keepalive(sock, options)
        except PolicyError as error:  # strict options the platform lacks
            _log.error(logevents.KERNEL_OPTION_UNSUPPORTED, error=str(error), strict=True)
            assert self.session is not None
            self.session.connection_lost(
                Reason.PROTOCOL_ERROR, self.scheduler.time(), source=Source.LOCAL, error=error
            )
            self.after_input()
            return False
        return True

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read.view

    def buffer_updated(self, nbytes: int) -> None:
        session = self.session
        assert session is not None
        scheduler = self.scheduler
        now = scheduler.clock()  # scheduler.time(), inlined: this runs on every read
        now = scheduler.time() if now > scheduler.stall_from else now - scheduler.stalled
        if nbytes == HEARTBEAT_FRAME_SIZE:
            # An idle connection's one read per interval: answered without the general path.
            # (The session is ALIVE there, so the transport is open: we close it only after
            # the session died.)
            handled = session.receive_heartbeat(self._read.heartbeat, now)
            if handled is not None:
                reply, deadline = handled
                if reply:
                    self.transport.write(reply)  # type: ignore[union-attr]
                if deadline is not None:
                    scheduler.reschedule(self, deadline)
                return
        session.receive_data(self._read.view[:nbytes], now)
        self.after_input(now)

    def eof_received(self) -> bool:
        assert self.session is not None
        self.session.receive_eof(self.scheduler.time())
        self.after_input()
        return True  # we close the transport ourselves once the session has died

    def connection_lost(self, exc: Exception | None) -> None:
        session = self.session
        if session is not None and session.death is None:
            reason, source = reason_for_error(exc)
            session.connection_lost(reason, self.scheduler.time(), source=source, error=exc)
            self.after_input()
        self.scheduler.cancel(self)
        self.connection._transport_lost()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self.flush()

    # ------------------------------------------------------------ driver duties

    def on_deadline(self, now: float) -> float | None:
        session = self.session
        assert session is not None
        due = session.heartbeat_due(now)
        if due is not None:  # the steady state: a PING due, or nothing (see buffer_updated)
            ping, next_at = due
            if ping:
                self.transport.write(ping)  # type: ignore[union-attr]
            return next_at  # the scheduler registers it
        deadline = session.next_deadline()
        if deadline is not None and deadline > now + EPSILON:
            # Evidence moved the deadline since it was registered (lazy rescheduling):
            # nothing is due, so skip straight to registering the new deadline.
            return deadline
        session.handle_timer(now)
        self.after_input(now)
        return None

    def after_input(self, now: float | None = None) -> None:
        """The driver's duty after every input: write, dispatch events, re-arm.

        Each step is skipped when it has nothing to do: most timer fires are lazy
        rescheduling no-ops, and at 10,000 connections they must cost next to nothing.
        """
        session = self.session
        assert session is not None
        if session.has_output or session.pending_send_bytes:
            self.flush(now)
        if session.has_events:
            self._dispatch(session.events_received())
        self.scheduler.schedule(self, session.next_deadline())

    def flush(self, now: float | None = None) -> None:
        """Write what the session has to send; ``now``: the clock, when the caller read it."""
        session = self.session
        transport = self.transport
        if session is None or transport is None or transport.is_closing():
            return
        budget = 0 if self._writing_paused else WRITE_BUDGET
        data = session.data_to_send(budget, self.scheduler.time() if now is None else now)
        if data:
            transport.write(data)
        if session.pending_send_bytes and not self._writing_paused:
            self.flush_soon()  # more DATA is waiting: continue after the loop's next reads
        if self.connection._drain_waiters:
            self.connection._send_progress()

    def flush_soon(self) -> None:
        """Flush on the next turn of the loop: sends made in one turn share one write."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def _dispatch(self, events: list[Event]) -> None:
        connection = self.connection
        for event in events:
            if isinstance(event, MessageReceived):
                connection._on_message(event.data)
            elif isinstance(event, HandshakeCompleted):
                connection._on_handshake(event)
            elif isinstance(event, Suspected):
                connection._on_suspect(event.silence, event.cause.value)
            elif isinstance(event, Recovered):
                connection._on_recover(event.silence)
            elif isinstance(event, Died):
                self._close_transport(event.abort)
                connection._on_dead(event.death)

    def _close_transport(self, abort: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not abort and transport.get_write_buffer_size() == 0:
            transport.close()  # our last frames (a CLOSE, say) are in the kernel: FIN after them
        else:
            transport.abort()  # the peer is unresponsive or not reading: do not wait on it
