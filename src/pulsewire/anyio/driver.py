"""The anyio driver: moves bytes between an anyio ``ByteStream`` and a sans-I/O ``Session``.

It follows the session's driver contract (:mod:`pulsewire.core.session`) and nothing
else. Each connection has a reader and a writer, so that no wait can hold up another:

- the **reader** (the task that calls :meth:`StreamDriver.run`) receives and feeds the
  session; it never sends and never waits on a timer.
- the **writer** is the only task that waits on the stream's send side. A peer that
  stops reading blocks the writer and nothing else: the reader keeps reading, the timer
  keeps running, and the heartbeat convicts the peer.

The **timer** depends on the backend. On asyncio (and uvloop) the connection registers
its deadline with the loop-wide :class:`~pulsewire.asyncio.scheduler.DeadlineScheduler`
the asyncio driver uses: the same ticks, the same handling of early timers and the same
local-stall guard, and no task or timer of its own; the session's clock is the
scheduler's. On other backends (trio) a third task sleeps in a cancel scope whose
deadline is the session's ``next_deadline()``, moved after every input, and the clock is
``anyio.current_time()``: trio's ``MockClock`` then drives the heartbeat in virtual time.
Either way ``handle_timer`` gets a ``now`` no earlier than the deadline, and the clock
never goes back on a time it has handed out.

After every input the driver takes the control frames at once (``data_to_send(0)``),
dispatches the events and re-arms the timer; DATA is taken by the writer, at most
``WRITE_BUDGET`` bytes per send, so PINGs and PONGs interleave with a large message.
Control frames go to a buffer the writer empties first, except on a plain socket
stream (TCP or Unix, not TLS) while the writer has nothing in flight: they are then
written at once with one non-blocking write to the socket, and only what the kernel does
not take is left to the writer. An idle connection's PING or PONG thus costs no task
switch, and nothing can block the reader or the timer.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import ssl
from collections.abc import Callable, Sequence

import anyio
import sniffio
from anyio.abc import ByteStream, SocketAttribute, SocketStream

from pulsewire import logevents
from pulsewire._log import EventLogger, get_logger
from pulsewire.asyncio.scheduler import DeadlineScheduler, Tick, scheduler_for
from pulsewire.core.events import Died, Event, Source
from pulsewire.core.frames import CloseCode
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Limits, Policy
from pulsewire.core.session import Session
from pulsewire.core.states import Reason
from pulsewire.driverkit.reasons import format_address, reason_for_error
from pulsewire.driverkit.sockets import apply_socket_options
from pulsewire.errors import PolicyError
from pulsewire.kernel import KeepaliveReport

__all__ = ["CLOCK_RESOLUTION", "READ_SIZE", "WRITE_BUDGET", "StreamDriver"]

_log = get_logger()

#: DATA bytes handed to the stream per send.
WRITE_BUDGET = 256 * 1024
#: Bytes asked of the stream per receive.
READ_SIZE = 64 * 1024
#: A timer may expire this much before its deadline.
CLOCK_RESOLUTION = 1e-3
#: After a death that is not an abort: how long the writer may take to flush (a CLOSE,
#: say) and the stream to close (TLS: close_notify) before the stream is dropped.
FLUSH_TIMEOUT = 1.0
#: On cancellation: how long a goodbye (CLOSE GOING_AWAY) may take before it is dropped.
GOODBYE_TIMEOUT = 0.25


def _shut_down(fd: int) -> None:
    """Shut both directions of the socket ``fd`` down (FIN; every wait on it wakes up)."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone


#: What a broken stream raises (anyio wraps the OS error, as ``__cause__``).
_BROKEN = (anyio.BrokenResourceError, OSError, ssl.SSLError)


class StreamDriver:
    """Runs one ``Session`` over one anyio byte stream; the user's side is a ``Connection``."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        policy: Policy,
        limits: Limits,
        socket_options: SocketOptions,
        name: str,
        initiator: bool,
        log: EventLogger | None = None,
    ) -> None:
        self.stream = stream
        #: Where this connection's log events go.
        self.log = log if log is not None else _log
        self.policy = policy
        self.limits = limits
        self.socket_options = socket_options
        self.name = name
        self.initiator = initiator
        #: Told of the session's events, after the driver acted on a death.
        self.on_events: Callable[[Sequence[Event]], None] | None = None
        #: Told when DATA queued by ``send()`` went to the stream.
        self.on_send_progress: Callable[[], None] | None = None
        self.session: Session | None = None
        self.peer_address = format_address(stream.extra(SocketAttribute.remote_address, None))
        #: What the kernel applied of the socket options (None: nothing asked, or not TCP).
        self.kernel_report: KeepaliveReport | None = None
        self._floor = -math.inf  # the latest time handed to the session
        self._clock = anyio.current_time  # replaced by the backend's own clock in run()
        #: asyncio: the loop-wide scheduler this connection's deadline is registered with.
        self._scheduler: DeadlineScheduler | None = None
        #: The tick this connection is registered in; owned by the scheduler.
        self.scheduled_in: Tick | None = None
        self._timer: anyio.CancelScope | None = None  # other backends: the timer's sleep
        self._tasks: anyio.CancelScope | None = None  # reader and writer
        self._out = bytearray()  # control frames taken, not yet sent
        # A plain socket stream's descriptor, written directly while the writer is idle
        # (forgotten before the stream closes: the number may then be reused).
        sock = stream.extra(SocketAttribute.raw_socket, None)
        #: The socket under the stream (also under TLS), shut down to abort.
        self._socket_fd: int | None = None if sock is None else sock.fileno()
        self._fd = self._socket_fd if isinstance(stream, SocketStream) else None
        self._writing = False  # the writer has bytes in flight
        self._output = anyio.Event()  # set: the writer has work
        self._abort = False
        self._send_interrupted = False  # a send was cancelled midway: the stream is unusable

    def time(self) -> float:
        """The clock sessions run on: ``anyio.current_time()``, never going back."""
        now = self._clock()
        return now if now > self._floor else self._floor

    # ------------------------------------------------------------------ the run

    async def run(self) -> None:
        """Run the connection until it is dead and its stream is closed.

        Cancelled, it says goodbye (CLOSE GOING_AWAY, best effort, within
        ``GOODBYE_TIMEOUT``), records ``Death(LOCAL_CLOSE)`` and drops the stream.
        """
        if sniffio.current_async_library() == "asyncio":
            self._scheduler = scheduler_for(asyncio.get_running_loop())
            self._clock = self._scheduler.time
        session = self.session = Session(
            self.policy, self.limits, now=self.time(), name=self.name, initiator=self.initiator
        )
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks.cancel_scope
                tasks.start_soon(self._write_loop)
                if self._scheduler is None:
                    tasks.start_soon(self._timer_loop)
                self._apply_socket_options()
                self.after_input()
                await self._read_loop()
                # Dead, and the reader has stopped (contract, step 5).
                if self._abort and self._socket_fd is None:
                    tasks.cancel_scope.cancel()
                else:  # the writer flushes what is left (or fails on the shut socket), briefly
                    self._output.set()
                    # (anyio's own clock: on asyncio the session's discounts local stalls)
                    tasks.cancel_scope.deadline = anyio.current_time() + FLUSH_TIMEOUT
        except BaseException:
            if session.death is None:  # cancelled from outside
                with anyio.CancelScope(shield=True):
                    await self._say_goodbye()
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._close_stream()

    async def _read_loop(self) -> None:
        session, stream = self.session, self.stream
        assert session is not None
        try:
            while True:
                data = await stream.receive(READ_SIZE)
                now = self.time()
                session.receive_data(data, now)
                self.after_input(now)
                if session.death is not None:
                    return
        except anyio.EndOfStream:
            session.receive_eof(self.time())
            self.after_input()
        except anyio.ClosedResourceError:
            self._lost(Reason.LOCAL_CLOSE, Source.LOCAL, None)
        except _BROKEN as error:
            self._broken(error)

    async def _timer_loop(self) -> None:
        """Backends other than asyncio: sleep until the deadline, in a movable cancel scope."""
        session = self.session
        assert session is not None
        while session.death is None:
            deadline = session.next_deadline()
            with anyio.CancelScope(deadline=math.inf if deadline is None else deadline) as timer:
                self._timer = timer
                await anyio.sleep_forever()
            self._timer = None
            if session.death is None:
                self._fire()

    def _fire(self) -> None:
        """The timer's scope expired: call ``handle_timer`` if the deadline has come."""
        session = self.session
        assert session is not None
        due = session.next_deadline()
        if due is None:
            return
        now = self.time()
        if now + CLOCK_RESOLUTION < due:
            return  # not due (the deadline moved as the scope expired): sleep again
        if now < due:
            now = self._floor = due  # woke early by the clock's resolution: act at the deadline
        self.on_deadline(now)

    def on_deadline(self, now: float) -> None:
        """The deadline has come (``now`` is no earlier than it): contract, step 4."""
        session = self.session
        assert session is not None
        session.handle_timer(now)
        self.after_input(now)

    async def _write_loop(self) -> None:
        session, stream = self.session, self.stream
        assert session is not None
        while True:
            await self._output.wait()
            self._output = anyio.Event()
            while True:
                pending = session.pending_send_bytes
                if self._out:
                    out, self._out = bytes(self._out), bytearray()
                elif pending:
                    data = session.data_to_send(WRITE_BUDGET, self.time())
                    out = data if type(data) is bytes else bytes(data)
                else:
                    break
                if not out:
                    break  # DATA waits for the peer's credit
                self._send_interrupted = self._writing = True
                try:
                    await stream.send(out)
                except anyio.ClosedResourceError:
                    return
                except _BROKEN as error:
                    self._broken(error)
                    return
                self._send_interrupted = self._writing = False
                if pending and self.on_send_progress is not None:
                    self.on_send_progress()
            if session.death is not None:
                return

    # ------------------------------------------------------------------ driver duties

    def after_input(self, now: float | None = None) -> None:
        """The driver's duty after every input: take the output, dispatch events, re-arm."""
        session = self.session
        assert session is not None
        control = session.data_to_send(0, self.time() if now is None else now)
        if control:
            if self._fd is not None and not self._writing and not self._out:
                control = self._send_now(self._fd, control)
            self._out += control
        if self._out or session.pending_send_bytes:
            self._output.set()
        events = session.events_received()
        if events:
            for event in events:
                if isinstance(event, Died):
                    self._died(event.abort)
            if self.on_events is not None:
                self.on_events(events)
        deadline = session.next_deadline()
        if self._scheduler is not None:
            self._scheduler.schedule(self, deadline)
        elif self._timer is not None:
            armed = math.inf if deadline is None else deadline
            if armed != self._timer.deadline:
                self._timer.deadline = armed

    @staticmethod
    def _send_now(fd: int, data: bytes | bytearray) -> bytes | bytearray:
        """One non-blocking write to the socket; return what the kernel did not take.

        Only while the writer has nothing in flight, so no byte of the stream's own can be
        waiting ahead of these (anyio's socket streams return from ``send`` only once the
        kernel has taken everything).
        """
        try:
            sent = os.write(fd, data)
        except OSError:  # full (BlockingIOError) or broken: the writer will find out which
            return data
        return data[sent:]

    def abort(self) -> None:
        """Drop the connection now, as this side's own decision (no CLOSE frame)."""
        if self.session is not None:
            self._lost(Reason.LOCAL_CLOSE, Source.LOCAL, None)

    def _died(self, abort: bool) -> None:
        self._abort = abort
        if self._timer is not None:
            self._timer.cancel()  # the timer task ends with the session
        if not abort:
            return
        if self._socket_fd is not None:
            # Abort through the socket: the reader and a blocked writer wake up through their
            # own waits (EOF, EPIPE). Cancelling them instead would race anyio's raw-socket
            # streams (asyncio, Unix sockets), whose wait futures the selector may resolve
            # after a cancellation: "InvalidStateError" from the event loop.
            _shut_down(self._socket_fd)
            self._output.set()
        elif self._tasks is not None:
            self._tasks.cancel()

    def _broken(self, error: BaseException) -> None:
        cause = error.__cause__ if isinstance(error, anyio.BrokenResourceError) else error
        reason, source = reason_for_error(cause)
        self._lost(reason, source, cause if isinstance(cause, Exception) else error)

    def _lost(self, reason: Reason, source: Source, error: BaseException | None) -> None:
        session = self.session
        assert session is not None
        error = error if isinstance(error, Exception) else None
        session.connection_lost(reason, self.time(), source=source, error=error)
        self.after_input()

    def _apply_socket_options(self) -> None:
        """Set the socket options on a TCP socket; a strict failure kills the connection."""
        try:
            self.kernel_report = apply_socket_options(
                self.stream.extra(SocketAttribute.raw_socket, None),
                self.socket_options,
                self.policy,
            )
        except PolicyError as error:  # strict options the platform lacks
            self.log.error(logevents.KERNEL_OPTION_UNSUPPORTED, error=str(error), strict=True)
            self._lost(Reason.PROTOCOL_ERROR, Source.LOCAL, error)

    async def _say_goodbye(self) -> None:
        """Cancelled while alive: CLOSE GOING_AWAY if the stream can take it, then dead."""
        session = self.session
        assert session is not None
        session.close(self.time(), CloseCode.GOING_AWAY, "cancelled")
        goodbye = bytes(self._out) + session.data_to_send(0, self.time())
        if goodbye and not self._send_interrupted:
            with anyio.move_on_after(GOODBYE_TIMEOUT):
                try:
                    await self.stream.send(goodbye)
                except (anyio.ClosedResourceError, *_BROKEN):
                    pass
        self._out.clear()
        self._lost(Reason.LOCAL_CLOSE, Source.LOCAL, None)

    async def _close_stream(self) -> None:
        self._fd = self._socket_fd = None
        if not self._abort and not self._send_interrupted:
            with anyio.move_on_after(FLUSH_TIMEOUT):
                try:
                    await self.stream.aclose()
                    return
                except (anyio.ClosedResourceError, *_BROKEN):
                    pass
        await anyio.aclose_forcefully(self.stream)
