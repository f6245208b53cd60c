"""The asyncio protocol: moves bytes between a transport and a sans-I/O ``Session``.

It follows the session's driver contract (:mod:`pulsewire.core.session`) and nothing else:
after every input it writes what the session has to send, hands the events to
``on_events`` (set by the ``Connection`` that owns it) and registers the session's next
deadline with the loop-wide scheduler. It holds no timer and no task of its own.

Writing: control frames are written at once; DATA only while the transport is not paused
and at most ``WRITE_BUDGET`` bytes per turn of the loop, so a 50 MB message is cut into
turns between which reads, PONGs and other connections get their share.

What the kernel took: asyncio's transports keep in a buffer of their own what the kernel
does not take at once. On a plain socket transport the protocol tells the session how
many bytes of its output that buffer still holds (``Session.output_unwritten``) after
each write and, while it is not empty, before each input; so when the session dies and
the transport is dropped, ``Death.unsent`` lists exactly the messages that never reached
the kernel. asyncio empties the buffer of a transport that failed (a reset, a broken
pipe) before it says so: the messages that may have been in it then count as in doubt.
Over TLS the buffer holds encrypted records whose size says nothing exact about our
bytes: there, what the transport took counts as written (in doubt, never unsent).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from typing import cast

from pulsewire import logevents
from pulsewire._log import EventLogger, get_logger
from pulsewire.asyncio.scheduler import DeadlineScheduler, Tick
from pulsewire.core.events import Died, Event, Source
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Limits, Policy
from pulsewire.core.session import Session
from pulsewire.core.states import Reason
from pulsewire.driverkit.reasons import format_address, reason_for_error
from pulsewire.driverkit.sockets import apply_socket_options
from pulsewire.errors import PolicyError
from pulsewire.kernel import KeepaliveReport

__all__ = ["WRITE_BUDGET", "PulsewireProtocol", "format_address", "reason_for_error"]

_log = get_logger()

#: DATA bytes handed to the transport per turn of the loop.
WRITE_BUDGET = 256 * 1024
#: Size of the read buffer shared by every connection of a loop (reads are synchronous).
READ_BUFFER_SIZE = 64 * 1024


def _peer_address(transport: asyncio.BaseTransport) -> str:
    """The peer's address; on a Unix socket whose peer has no name (an accepted client),
    the path both ends share."""
    address = format_address(transport.get_extra_info("peername"))
    if address == "?":
        sockname = transport.get_extra_info("sockname")
        if isinstance(sockname, str | bytes):
            return format_address(sockname)
    return address


_read_buffers: weakref.WeakKeyDictionary[DeadlineScheduler, memoryview] = (
    weakref.WeakKeyDictionary()
)


def _shared_read_buffer(scheduler: DeadlineScheduler) -> memoryview:
    """One read buffer per loop: asyncio calls get_buffer and buffer_updated back to back,
    and the session copies what it keeps, so idle connections hold no buffer of their own."""
    view = _read_buffers.get(scheduler)
    if view is None:
        view = _read_buffers[scheduler] = memoryview(bytearray(READ_BUFFER_SIZE))
    return view


class PulsewireProtocol(asyncio.BufferedProtocol):
    """Transport callbacks for one connection; the user-facing side is a ``Connection``."""

    def __init__(
        self,
        scheduler: DeadlineScheduler,
        *,
        policy: Policy,
        limits: Limits,
        socket_options: SocketOptions,
        name: str,
        initiator: bool,
        log: EventLogger | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.policy = policy
        self.limits = limits
        self.socket_options = socket_options
        self.name = name
        self.initiator = initiator
        #: Where this connection's log events go.
        self.log = log if log is not None else _log
        #: Told when the transport is connected and the session exists.
        self.on_connected: Callable[[], None] | None = None
        #: Told of the session's events, after the protocol acted on a death.
        self.on_events: Callable[[Sequence[Event]], None] | None = None
        #: Told when DATA queued by ``send()`` went to the transport.
        self.on_send_progress: Callable[[], None] | None = None
        #: Told when the bytes the peer makes us hold change: ``(protocol, held,
        #: incomplete)``, the session's ``inbound_held`` and ``inbound_incomplete`` (0 once
        #: dead); set by a server with an inbound budget, one callable for all its protocols.
        self.on_inbound: Callable[[PulsewireProtocol, int, int], None] | None = None
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self.scheduled_in: Tick | None = None
        self.peer_address = "?"
        #: What the kernel applied of the socket options (None: nothing asked, or not TCP).
        self.kernel_report: KeepaliveReport | None = None
        #: Kept alive as long as the transport is (a wrapped stream's writer).
        self.holds: object = None
        self._read_buffer = _shared_read_buffer(scheduler)
        self._writing_paused = False
        self._flush_scheduled = False
        # Bytes of the session's output the transport held at the last look; None: not
        # tracked (TLS, or before the transport connected).
        self._unwritten: int | None = None
        self._inbound_held = 0  # as last told to on_inbound

    def time(self) -> float:
        """The clock sessions run on (the scheduler's stall-compensated clock)."""
        return self.scheduler.time()

    # ------------------------------------------------------------ transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = transport = cast(asyncio.Transport, transport)
        self.peer_address = _peer_address(transport)
        self.session = Session(
            self.policy,
            self.limits,
            now=self.time(),
            name=self.name,
            rng=self.scheduler.rng,
            initiator=self.initiator,
        )
        if (
            transport.get_extra_info("sslcontext") is None
            and transport.get_write_buffer_size() == 0  # a wrapped stream's may hold others'
        ):
            self._unwritten = 0
            self.session.output_unwritten(0)  # the transport's buffer is ours to report
        self._apply_socket_options(transport)
        if self.on_connected is not None:
            self.on_connected()
        self.after_input()

    def _apply_socket_options(self, transport: asyncio.Transport) -> None:
        """Set the socket options on a TCP socket; a strict failure kills the connection."""
        try:
            self.kernel_report = apply_socket_options(
                transport.get_extra_info("socket"), self.socket_options, self.policy
            )
        except PolicyError as error:  # strict options the platform lacks
            self.log.error(logevents.KERNEL_OPTION_UNSUPPORTED, error=str(error), strict=True)
            assert self.session is not None
            self.session.connection_lost(
                Reason.PROTOCOL_ERROR, self.time(), source=Source.LOCAL, error=error
            )

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        session = self.session
        assert session is not None
        if self._unwritten:
            self._report_unwritten()
        now = self.scheduler.time()
        session.receive_data(self._read_buffer[:nbytes], now)
        self.after_input(now)

    def receive(self, data: bytes) -> None:
        """Bytes that reached this connection before the transport was handed to us (read
        ahead by a ``StreamReader``): the session takes them before any later read."""
        session = self.session
        assert session is not None
        if data and session.death is None:
            if self._unwritten:
                self._report_unwritten()
            now = self.scheduler.time()
            session.receive_data(data, now)
            self.after_input(now)

    def eof_received(self) -> bool:
        assert self.session is not None
        if self._unwritten:
            self._report_unwritten()
        self.session.receive_eof(self.time())
        self.after_input()
        # We close the transport ourselves once the session has died; a TLS transport
        # closes itself on EOF in any case (and asyncio warns if told otherwise).
        return self.transport is not None and self.transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        session = self.session
        if session is not None and session.death is None:
            reason, source = reason_for_error(exc)
            # asyncio has emptied the buffer of a transport that failed: if it held any of
            # our output at the last look, we cannot tell how much (None: in doubt).
            unwritten = 0 if self._unwritten == 0 else None
            session.connection_lost(
                reason, self.time(), source=source, error=exc, unwritten=unwritten
            )
            self.after_input()
        self.scheduler.cancel(self)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self.flush()

    # ------------------------------------------------------------ driver duties

    def on_deadline(self, now: float) -> None:
        session = self.session
        assert session is not None
        if self._unwritten:
            self._report_unwritten()
        session.handle_timer(now)
        self.after_input(now)

    def after_input(self, now: float | None = None) -> None:
        """The driver's duty after every input: write, dispatch events, re-arm."""
        session = self.session
        assert session is not None
        self.flush(now)
        events = session.events_received()
        if events:
            for event in events:
                if isinstance(event, Died):
                    self._close_transport(event.abort)
            if self.on_events is not None:
                self.on_events(events)
        if self.on_inbound is not None:
            self._report_inbound(session)
        self.scheduler.schedule(self, session.next_deadline())

    def close_now(self, code: int, reason: str = "") -> None:
        """Send CLOSE and drop the connection without waiting for the peer (a refusal
        before the handshake; shedding after it): see ``Session.close_now``."""
        session = self.session
        if session is None or session.death is not None:
            return
        if self._unwritten:
            self._report_unwritten()
        session.close_now(self.time(), code, reason)
        self.after_input()

    def flush(self, now: float | None = None) -> None:
        """Write what the session has to send; ``now``: the clock, when the caller read it."""
        session = self.session
        transport = self.transport
        if session is None or transport is None or transport.is_closing():
            return
        pending = session.pending_send_bytes
        budget = 0 if self._writing_paused else WRITE_BUDGET
        data = session.data_to_send(budget, self.scheduler.time() if now is None else now)
        if data:
            transport.write(data)
            unwritten = self._unwritten
            if unwritten is not None:
                held = transport.get_write_buffer_size()
                # An idle heartbeat leaves the buffer empty and carries no message.
                if held or unwritten or pending:
                    self._unwritten = held
                    session.output_unwritten(held)
        if pending:
            if session.pending_send_bytes and not self._writing_paused:
                self.flush_soon()  # more DATA is waiting: continue after the loop's next reads
            if session.pending_send_bytes < pending and self.on_send_progress is not None:
                self.on_send_progress()

    def flush_soon(self) -> None:
        """Flush on the next turn of the loop: sends made in one turn share one write."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()
        session = self.session
        if self.on_inbound is not None and session is not None and session.death is None:
            self._report_inbound(session)  # the application consumed: we may hold less

    def _report_unwritten(self) -> None:
        """Tell the session how much of its output the transport still holds (called before
        an input, since the transport may have written more on its own in between)."""
        transport, session = self.transport, self.session
        assert transport is not None
        assert session is not None
        held = self._unwritten = transport.get_write_buffer_size()
        session.output_unwritten(held)

    def _report_inbound(self, session: Session) -> None:
        held = session.inbound_held if session.death is None else 0
        if held != self._inbound_held:
            self._inbound_held = held
            assert self.on_inbound is not None
            self.on_inbound(self, held, session.inbound_incomplete if held else 0)

    def abort(self) -> None:
        """Drop the connection now, as this side's own decision (no CLOSE frame).

        What ``send()`` accepted is handed to the transport first, best effort.
        """
        session = self.session
        if session is not None:
            self.flush()
            # The verdict is ours: record it before the transport reports a bare EOF, which
            # would be mistaken for the peer closing (Death(EOF, KERNEL)).
            transport = self.transport
            unwritten = None
            if self._unwritten is not None and transport is not None:
                unwritten = transport.get_write_buffer_size()  # dropped with the transport
            session.connection_lost(
                Reason.LOCAL_CLOSE, self.time(), source=Source.LOCAL, unwritten=unwritten
            )
            self.after_input()  # dispatches the death, which aborts the transport
        if self.transport is not None:
            self.transport.abort()

    def _close_transport(self, abort: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not abort and transport.get_write_buffer_size() == 0:
            transport.close()  # our last frames (a CLOSE, say) are in the kernel: FIN after them
        else:
            transport.abort()  # the peer is unresponsive or not reading: do not wait on it
