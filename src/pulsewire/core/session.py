"""The sans-I/O session: one side of one pulsewire connection.

The driver contract, complete (a driver for another I/O library needs nothing else):

1. Create the session when the transport connects, passing the monotonic ``now``.
2. Feed every input with the current ``now``, read from one monotonic clock that never
   goes back on a time it has given (a PONG must not look older than its PING):
   :meth:`Session.receive_data`,
   :meth:`Session.receive_eof`, :meth:`Session.connection_lost` (with the reason mapped from
   the socket error), :meth:`Session.handle_timer` when :meth:`Session.next_deadline` has
   come, and the local user's :meth:`Session.send_message`, :meth:`Session.message_consumed`
   and :meth:`Session.close`.
3. After every input, write :meth:`Session.data_to_send` (control frames first, then DATA
   within the byte budget the transport can take), dispatch
   :meth:`Session.events_received`, and arm one timer at :meth:`Session.next_deadline`
   (``None``: no timer). ``next_deadline`` is a pure query: asking changes nothing.
   A driver whose writes can wait in a buffer of its own before the kernel takes them
   (asyncio's transports) reports, after each write and before each input while that
   buffer is not empty, how many bytes of the output it still holds:
   :meth:`Session.output_unwritten` (and passes the figure to ``connection_lost`` when it
   knows it). Then a death lists exactly the messages that never reached the kernel; a
   driver that does not report has them counted as written once handed to it.
4. When the timer fires, call :meth:`Session.handle_timer` with a ``now`` no earlier than
   the deadline: a timer that can fire early by its clock's resolution passes the deadline
   itself. A driver may call it late (a busy loop) or when nothing is due; both are safe.
5. On a :class:`~pulsewire.core.events.Died` event, stop reading; abort the transport when
   ``abort`` is true (the peer is presumed unresponsive), else flush and close it.

The session never raises on the peer's input: a malformed frame becomes a CLOSE frame with
the matching code and ``Death(PROTOCOL_ERROR)``. It raises only on local misuse.
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Any

import msgspec

from pulsewire.core.codec import Frame, FrameDecoder
from pulsewire.core.estimators import RttEstimator
from pulsewire.core.events import (
    Death,
    Died,
    Event,
    HandshakeCompleted,
    MessageReceived,
    PingAnswered,
    Recovered,
    Source,
    SuspectCause,
    Suspected,
)
from pulsewire.core.frames import (
    FEATURES,
    FLAG_FIN,
    HEADER,
    MESSAGE_OVERHEAD,
    PREAMBLE,
    Close,
    CloseCode,
    Credit,
    Feature,
    FrameKind,
    Hello,
    Ping,
    Pong,
    decode_heartbeat,
    encode_control,
    ping_frame,
    pong_frame,
)
from pulsewire.core.liveness import Decision, LivenessTracker
from pulsewire.core.policy import Evidence, Limits, Policy
from pulsewire.core.states import Reason, State, Trigger, next_state
from pulsewire.core.stats import SessionStats
from pulsewire.errors import (
    HandshakeError,
    LocalClosedError,
    PeerDeadError,
    ProtocolError,
    UsageError,
)

__all__ = ["PING_TOLERANCE", "Negotiated", "Session"]

_DECODERS: dict[FrameKind, msgspec.msgpack.Decoder[Any]] = {
    FrameKind.HELLO: msgspec.msgpack.Decoder(Hello),
    FrameKind.PING: msgspec.msgpack.Decoder(Ping),
    FrameKind.PONG: msgspec.msgpack.Decoder(Pong),
    FrameKind.CLOSE: msgspec.msgpack.Decoder(Close),
    FrameKind.CREDIT: msgspec.msgpack.Decoder(Credit),
}

#: Peer close codes that mean "you are the one who broke the protocol".
_PEER_BLAMES_US = frozenset(
    {
        CloseCode.PROTOCOL_ERROR,
        CloseCode.UNSUPPORTED_VERSION,
        CloseCode.POLICY_MISMATCH,
        CloseCode.TOO_MANY_PINGS,
        CloseCode.TOO_LARGE,
        CloseCode.FLOW_CONTROL,
        CloseCode.HANDSHAKE_TIMEOUT,
        CloseCode.TOO_SLOW,
    }
)
_CLOSE_CODES = frozenset(int(code) for code in CloseCode)
_MAX_CREDIT = 2**40
_UNLIMITED = 2**62
_MAX_STUCK_FOR = 86_400.0  #: the bound ``Pong.stuck_for`` is decoded with
_MAX_NAME = 256  #: the bound ``Hello.name`` is decoded with
#: A peer's pings may come this fraction of its negotiated interval apart, at the closest,
#: before they count against it (its jitter is at most 50 % by policy).
PING_TOLERANCE = 0.5
#: Pings the peer may send at once beyond its rate, on top of those a stall could release.
_PING_BURST = 3.0


#: Frames decoded at a time from one read (see receive_data).
FRAME_BATCH = 128


def _message_bytes(data: object) -> bytes:
    """A copy of a bytes-like message; anything else is the caller's mistake, said plainly
    (``bytes(5)`` would be five zero bytes, ``bytes(None)`` a puzzling TypeError)."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    hint = ": encode text first, e.g. text.encode()" if isinstance(data, str) else ""
    raise TypeError(
        f"a message must be bytes, bytearray or memoryview, not {type(data).__name__}{hint}"
    )


class Negotiated(msgspec.Struct, frozen=True):
    """What the handshake settled."""

    peer: Hello  #: the peer's HELLO as received
    ping_interval: float  #: this side pings an idle connection this often
    peer_ping_interval: float  #: the peer pings us at most this often


class Session:
    """One side of a pulsewire connection: bytes and ``now`` in; bytes, events, deadline out.

    See the module docstring for the driver contract.
    """

    # 10,000 idle connections each carry one of these.
    __slots__ = (
        "_any_evidence",
        "_clock",
        "_close_code",
        "_close_deadline",
        "_close_queued",
        "_close_reason",
        "_consumed_unreported",
        "_control",
        "_decoder",
        "_echo",
        "_events",
        "_frame_since",
        "_handshake_evidence",
        "_held",
        "_hello",
        "_inbound_deadline",
        "_message_mark",
        "_message_since",
        "_messages_consumed",
        "_messages_out",
        "_messages_received",
        "_messages_sent",
        "_out_offset",
        "_outbox",
        "_outbox_offset",
        "_partial",
        "_partial_size",
        "_peer_consumed",
        "_peer_received",
        "_peer_stuck_for",
        "_pending_bytes",
        "_ping_gap",
        "_ping_seq",
        "_pings_depth",
        "_pings_full_at",
        "_pings_received",
        "_pings_refused",
        "_pongs_received",
        "_progress",
        "_receipts",
        "_received_bytes",
        "_recv_credit",
        "_rng",
        "_rtt",
        "_send_credit",
        "_stamp_received",
        "_stamp_received_at",
        "_stamp_sent",
        "_started",
        "_state",
        "_tracker",
        "_tracks_output",
        "_unconsumed_since",
        "_wanted_pongs",
        "_window",
        "_written_upto",
        "death",
        "initiator",
        "limits",
        "name",
        "negotiated",
        "policy",
    )

    def __init__(
        self,
        policy: Policy | None = None,
        limits: Limits | None = None,
        *,
        now: float,
        name: str = "",
        rng: random.Random | None = None,
        initiator: bool = True,
    ) -> None:
        """``initiator``: this side opened the connection (a client). The responder (a
        server) sends its preamble at once but its HELLO only after accepting the
        initiator's, so an initiator that has the responder's HELLO knows it was accepted:
        ``connect()`` never returns a connection that the server is about to refuse.

        ``rng`` draws the ping jitter: pass a seeded one for repeatable runs. Default: a
        generator of the session's own (2.5 KiB); a driver with many connections shares one.
        """
        self.policy = policy = policy if policy is not None else Policy()
        self._any_evidence = policy.evidence is Evidence.ANY  # read on every read
        self.limits = limits = limits if limits is not None else Limits()
        if len(name) > _MAX_NAME:
            raise UsageError(f"name longer than {_MAX_NAME} characters: the peer would reject it")
        self.name = name
        self.initiator = initiator
        self._rng = rng if rng is not None else random.Random()
        self._state = State.HANDSHAKE
        self._started = now
        self._clock = now  # the time of the latest input: when our output is written
        self._decoder = FrameDecoder(limits.max_frame_size)
        self._window = limits.effective_receive_window + MESSAGE_OVERHEAD
        hello = Hello(
            interval=policy.interval,
            min_interval=policy.min_peer_interval,
            timeout=policy.timeout,
            max_frame_size=limits.max_frame_size,
            max_message_size=limits.max_message_size,
            window=self._window,
            name=name,
            features=int(FEATURES),
        )
        self._hello: bytes | None = encode_control(FrameKind.HELLO, hello)
        # Control frames waiting: None, one frame's bytes, or a bytearray of several.
        self._control: bytes | bytearray | None = PREAMBLE
        if initiator:
            self._send_hello()
        self._events: list[Event] = []
        self.negotiated: Negotiated | None = None
        self._tracker: LivenessTracker | None = None
        self._handshake_evidence = now
        self.death: Death | None = None
        self._rtt = RttEstimator()
        # Outgoing DATA: whole messages, the head one possibly half sent.
        self._outbox: deque[bytes] | None = None  # created on the first send: idle costs nothing
        self._outbox_offset = 0
        self._pending_bytes = 0
        self._send_credit = 0
        self._close_queued = False  # close() was called: CLOSE follows the outbox
        self._close_code: int | None = None
        self._close_reason = ""
        self._close_deadline = math.inf
        # Incoming DATA: the message being reassembled and the credit the peer has left.
        self._partial: list[bytes] = []
        self._partial_size = 0
        self._recv_credit = self._window
        # Deadlines on what the peer started (see Limits): when the incomplete frame in the
        # decoder began; when the current window of the incomplete message began, and its
        # size then; the earlier of the deadlines they make, kept ready for next_deadline().
        self._frame_since = math.inf
        self._message_since = math.inf
        self._message_mark = 0
        self._inbound_deadline = math.inf
        self._consumed_unreported = 0
        self._ping_seq = 0  # also the count of PINGs sent
        # Abuse limit on the peer's pings, a token bucket (see _spend_ping_token); the
        # handshake sets its rate.
        self._ping_gap = 1.0
        self._pings_depth = 0.0
        self._pings_full_at = now
        # Progress: arrival times of received messages the application has not consumed.
        self._unconsumed_since: deque[float] | None = None
        self._peer_stuck_for = 0.0
        # Delivery accounting (see Death): messages passed to send_message, those handed
        # whole to the driver, and, when the driver reports what it still holds
        # (output_unwritten), those it may hold with the output offset each ends at.
        self._messages_sent = 0
        self._messages_out = 0
        self._out_offset = 0  # bytes handed to the driver so far
        self._tracks_output = False
        self._held: deque[tuple[int, bytes]] | None = None
        self._written_upto = 0  # output offset up to which the kernel has taken everything
        self._peer_received = 0  # of ours, as the peer's CLOSE reported (Feature.RECEIPTS)
        self._messages_received = 0
        self._messages_consumed = 0  # received messages the application has taken
        self._peer_consumed = 0  # of ours, as the peer last reported (Feature.PROGRESS)
        # Features both sides announced (set at the handshake).
        self._echo = False  # Feature.ECHO: RTT on both ends
        self._progress = False  # Feature.PROGRESS: consumed counts in PING and PONG
        self._receipts = False  # Feature.RECEIPTS: counts in CREDIT and CLOSE
        self._stamp_sent = math.nan  # our latest PONG's stamp (NaN equals no echo)
        self._stamp_received: float | None = None  # the peer's latest PONG stamp ...
        self._stamp_received_at = 0.0  # ... and when it arrived
        self._wanted_pongs: set[int] | None = None  # on-demand pings awaiting an answer
        self._received_bytes = 0
        self._pings_received = 0
        self._pongs_received = 0
        self._pings_refused = 0

    # ------------------------------------------------------------------ queries (pure)

    @property
    def state(self) -> State:
        return self._state

    @property
    def rtt(self) -> RttEstimator:
        """RTT statistics of this side's own pings."""
        return self._rtt

    @property
    def tracker(self) -> LivenessTracker | None:
        """The liveness tracker, from the handshake on."""
        return self._tracker

    @property
    def pending_send_bytes(self) -> int:
        """Bytes of DATA accepted by :meth:`send_message` and not yet handed out (after the
        death: the bytes that never were)."""
        return self._pending_bytes

    @property
    def inbound_held(self) -> int:
        """Bytes the peer has made this side hold: an incomplete frame and message, and
        messages received that the application has not consumed (counted as flow-control
        credit: 16 bytes more per message). Bounded by the receive window plus one frame."""
        return self._decoder.buffered + self._window - self._recv_credit - self._consumed_unreported

    @property
    def inbound_incomplete(self) -> int:
        """Of :attr:`inbound_held`, the bytes of the incomplete frame and message: what a
        peer that sends slowly makes us hold."""
        return self._decoder.buffered + self._partial_size

    def ping_allowed_at(self) -> float:
        """The earliest time :meth:`send_ping` may send a PING: pings closer than
        ``PING_TOLERANCE`` of the negotiated interval count against us at the peer."""
        tracker, negotiated = self._tracker, self.negotiated
        if tracker is None or negotiated is None:
            return math.inf
        return tracker.last_ping + negotiated.ping_interval * PING_TOLERANCE

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must next be called; ``None`` once DEAD."""
        if self._state is State.DEAD:
            return None
        tracker = self._tracker
        if tracker is None:
            deadline = self._started + self.policy.handshake_timeout
        else:
            deadline = tracker.next_deadline()
        close_deadline = self._close_deadline
        if close_deadline < deadline:
            deadline = close_deadline
        inbound_deadline = self._inbound_deadline
        return deadline if deadline < inbound_deadline else inbound_deadline

    def silence(self, now: float) -> float:
        """Seconds since the last evidence of life."""
        if self._tracker is None:
            return max(0.0, now - self._handshake_evidence)
        return self._tracker.silence(now)

    def stats(self, now: float) -> SessionStats:
        """A frozen snapshot of counters and RTT figures."""
        rtt = self._rtt
        return SessionStats(
            state=self._state,
            silence=self.silence(now),
            rtt_last=rtt.last,
            rtt_smoothed=rtt.srtt,
            rtt_variance=rtt.rttvar,
            rtt_min=rtt.minimum if rtt.count else None,
            rtt_max=rtt.maximum if rtt.count else None,
            rtt_p50=rtt.percentile(0.5),
            rtt_p99=rtt.percentile(0.99),
            timeout=self.policy.timeout if self._tracker is None else self._tracker.timeout,
            peer_stuck_for=self._peer_stuck_for,
            pending_send_bytes=self._pending_bytes,
            messages_sent=self._messages_sent,
            messages_written=self._messages_sent - self._unwritten_count(),
            messages_received=self._messages_received,
            messages_consumed=self._messages_consumed,
            peer_consumed=self._peer_consumed if self._progress or self._receipts else None,
            bytes_out=self._out_offset,
            bytes_in=self._received_bytes,
            pings_sent=self._ping_seq,
            pings_received=self._pings_received,
            pongs_received=self._pongs_received,
            pings_refused=self._pings_refused,
        )

    # ------------------------------------------------------------------ outputs

    def events_received(self) -> list[Event]:
        """Events since the last call, oldest first."""
        events = self._events
        if not events:
            return []
        self._events = []
        return events

    def data_to_send(
        self, budget: int | None = None, now: float | None = None
    ) -> bytes | bytearray:
        """Bytes to write now: every pending control frame, then DATA up to ``budget`` bytes.

        Control frames (PING, PONG, CREDIT, CLOSE on error) always go out first, so a long
        queue of DATA in user space never holds a PONG back. ``budget=0`` sends control only;
        ``None``: no limit. ``now``, when the driver knows it, dates the output (a side that
        has sent nothing for an interval pings, so that its peer has evidence); otherwise
        the time of the latest input is used.
        """
        if now is not None and now > self._clock:
            self._clock = now
        out = self._control
        self._control = None
        if self._outbox and budget != 0 and self.negotiated is not None:
            out = bytearray() if out is None else bytearray(out)
            self._emit_data(out, budget)
        if self._close_queued and not self._outbox:
            self._close_queued = False
            assert self._close_code is not None
            close = self._close_bytes(self._close_code, self._close_reason)
            out = close if out is None else out + close
        if not out:
            return b""
        self._out_offset += len(out)
        if self._tracker is not None:
            self._tracker.sent(self._clock)
        return out

    def output_unwritten(self, nbytes: int) -> None:
        """The driver still holds the last ``nbytes`` of the output :meth:`data_to_send`
        returned: the kernel has not taken them yet (asyncio: the transport's buffer).

        A driver whose writes can wait in such a buffer calls this after every write, and
        before every input while ``nbytes`` was not 0; a death then lists in
        ``Death.unsent`` every message whose last byte the kernel never took. Without it,
        output handed to the driver counts as written.
        """
        if not 0 <= nbytes <= self._out_offset:
            raise UsageError(
                f"unwritten bytes must lie between 0 and the output so far, got {nbytes}"
            )
        self._tracks_output = True
        upto = self._out_offset - nbytes
        if upto > self._written_upto:
            self._written_upto = upto
        held = self._held
        while held and held[0][0] <= upto:
            held.popleft()

    # ------------------------------------------------------------------ local inputs

    def send_message(self, data: bytes | bytearray | memoryview) -> int:
        """Queue one application message and return its number (0 for the first on this
        connection; see :class:`~pulsewire.core.events.Death`). Raises if the connection
        is closing or dead."""
        if self.death is not None or self._state is State.CLOSING:
            self._check_open("send")
        negotiated = self.negotiated
        if negotiated is None:
            raise UsageError("cannot send before the handshake has completed")
        # Keep a reference, not a copy, when the data cannot change under us; bytes() of
        # anything else also sizes it in bytes (len() of a memoryview counts items).
        message = data if type(data) is bytes else _message_bytes(data)
        size = len(message)
        if size > negotiated.peer.max_message_size:
            raise UsageError(
                f"message of {size} bytes exceeds the peer's max_message_size "
                f"({negotiated.peer.max_message_size} bytes)"
            )
        outbox = self._outbox
        if outbox is None:
            outbox = self._outbox = deque()
        outbox.append(message)
        self._pending_bytes += size
        number = self._messages_sent
        self._messages_sent = number + 1
        return number

    def message_consumed(self, size: int) -> None:
        """The application has taken a received message of ``size`` bytes: grant credit."""
        self._messages_consumed += 1
        unconsumed = self._unconsumed_since
        if unconsumed:
            unconsumed.popleft()
            if not unconsumed:
                self._unconsumed_since = None
        if self.death is not None:
            return
        self._consumed_unreported += size + MESSAGE_OVERHEAD
        self._grant_credit()

    def send_ping(self, now: float) -> int:
        """Send a PING now, outside the schedule, and return its sequence number; its answer
        comes as a :class:`~pulsewire.core.events.PingAnswered` event with the round trip.

        It takes the place of the next scheduled ping. Raises if the connection is not open.
        """
        if self.death is not None or self._state is State.CLOSING:
            self._check_open("ping")
        tracker = self._tracker
        if tracker is None:
            raise UsageError("cannot ping before the handshake has completed")
        allowed_at = self.ping_allowed_at()
        if now < allowed_at:
            raise UsageError(
                f"pinged {allowed_at - now:.3f} s too soon: the peer counts pings closer than "
                "half the negotiated interval as abuse (see ping_allowed_at)"
            )
        self._clock = now
        seq = self._send_ping(now)
        tracker.pinged(now)
        if self._wanted_pongs is None:
            self._wanted_pongs = set()
        self._wanted_pongs.add(seq)
        return seq

    def close(self, now: float, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start an orderly close: queued DATA is sent first, then CLOSE; wait for the peer's."""
        if self._state in (State.CLOSING, State.DEAD):
            return
        _check_close(code, reason)
        self._clock = now
        self._close_code = int(code)
        self._close_reason = reason
        self._close_queued = True  # encoded when it goes out, with the counts of that moment
        self._close_deadline = now + self.policy.effective_close_timeout
        self._state = next_state(self._state, Trigger.LOCAL_CLOSE)

    def close_now(self, now: float, code: int, reason: str = "") -> None:
        """Close at once, without waiting for the peer: CLOSE goes out (ahead of any queued
        DATA, which is reported in ``Death.unsent``) and the session dies with
        ``LOCAL_CLOSE``; the driver flushes and closes the transport.

        Before a responder's handshake this is a refusal: the peer gets the preamble and
        CLOSE instead of a HELLO (a server at its connection limit answers this way).
        A server also sheds a connection so, when it must free what that peer holds.
        """
        if self.death is not None:
            return
        _check_close(code, reason)
        self._clock = now
        self._hello = None  # a responder that has not accepted yet never will
        self._queue_control(self._close_bytes(code, reason))
        self._die(
            Reason.LOCAL_CLOSE,
            Source.LOCAL,
            now,
            abort=False,
            close_code=int(code),
            close_reason=reason,
        )

    # ------------------------------------------------------------------ network inputs

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Bytes arrived from the peer."""
        if self._state is State.DEAD or not data:
            return
        self._clock = now
        self._received_bytes += len(data)
        if self._any_evidence:
            self._evidence(now)
        decoder = self._decoder
        try:
            heartbeat = decoder.whole_heartbeat(data) if self.negotiated is not None else None
            if heartbeat is not None:  # an idle connection's one read per interval
                if isinstance(heartbeat, Ping):
                    self._handle_ping(heartbeat, now)
                else:
                    self._handle_pong(heartbeat, now)
                return
            # Decoded FRAME_BATCH frames at a time: a peer whose first frames kill the
            # connection (a ping flood, say) costs the decoding of one batch, not of every
            # frame it managed to pack into the read.
            frames = decoder.feed(data, FRAME_BATCH)
            completed = bool(frames)
            while True:
                for frame in frames:
                    self._handle_frame(frame, now)
                    if self.death is not None:
                        return
                if len(frames) < FRAME_BATCH:
                    break
                frames = decoder.feed(b"", FRAME_BATCH)  # the rest of the read
            decoder.raise_pending()
        except ProtocolError as error:
            self._fail(error, now)
            return
        # The frame deadline: from the read that left a frame incomplete, until one whole.
        if decoder.at_frame_boundary:
            if self._frame_since != math.inf:
                self._frame_since = math.inf
                self._set_inbound_deadline()
        elif completed or self._frame_since == math.inf:
            self._frame_since = now
            self._set_inbound_deadline()

    def receive_eof(self, now: float) -> None:
        """The peer closed its sending side (FIN)."""
        if self._state is State.DEAD:
            return
        if self._state is State.CLOSING:
            self._die(Reason.LOCAL_CLOSE, Source.KERNEL, now, abort=False)
            return
        error: ProtocolError | None = None
        try:
            self._decoder.feed_eof()
        except ProtocolError as exc:
            error = exc
        self._die(Reason.EOF, Source.KERNEL, now, abort=False, error=error)

    def connection_lost(
        self,
        reason: Reason,
        now: float,
        *,
        source: Source = Source.KERNEL,
        error: Exception | None = None,
        unwritten: int | None = None,
    ) -> None:
        """The transport is gone; ``reason`` is mapped from the socket error by the driver.

        ``unwritten``: the bytes of output the driver still held when the transport went
        (see :meth:`output_unwritten`), if it knows; ``None`` when it cannot tell (asyncio
        empties a failed transport's buffer before it says so): the messages it may have
        held are then counted as in doubt, never as unsent.
        """
        if self._state is State.DEAD:
            return
        if self._state is State.CLOSING and reason is Reason.EOF:
            reason = Reason.LOCAL_CLOSE
        if unwritten is not None:
            self.output_unwritten(unwritten)
        else:
            self._written_upto = self._out_offset
        self._die(reason, source, now, abort=True, error=error)

    def handle_timer(self, now: float) -> None:
        """Act on whatever is due at ``now``: ping, suspect, convict, give up closing."""
        if self._state is State.DEAD:
            return
        self._clock = now
        if now >= self._close_deadline:
            late = TimeoutError(
                f"no CLOSE from the peer within {self.policy.effective_close_timeout} s"
            )
            self._die(Reason.LOCAL_CLOSE, Source.LOCAL, now, abort=True, error=late)
            return
        if now >= self._inbound_deadline and not self._inbound_progressed(now):
            self._fail(self._too_slow(now), now)
            return
        tracker = self._tracker
        if tracker is None:
            if now >= self._started + self.policy.handshake_timeout:
                self._handshake_timed_out(now)
            return
        decision = tracker.poll(now)
        if decision is Decision.PING:  # an idle connection's timer: only a ping is due
            self._send_ping(now)
        elif decision is not Decision.NONE:
            self._act_on(decision, tracker, now)

    def _act_on(self, decision: Decision, tracker: LivenessTracker, now: float) -> None:
        if Decision.DEAD in decision:
            self._die(Reason.TIMEOUT, Source.HEARTBEAT, now, abort=True)
            return
        if Decision.SUSPECT in decision:
            self._refresh_suspicion(now, tracker.silence(now), SuspectCause.SILENCE)
        if Decision.PING in decision:
            self._send_ping(now)

    # ------------------------------------------------------------------ output internals

    def _send_ping(self, now: float) -> int:
        seq = self._ping_seq = self._ping_seq + 1
        echo = self._stamp_received if self._echo else None
        held = 0.0 if echo is None else now - self._stamp_received_at
        consumed = self._messages_consumed if self._progress else None
        self._queue_control(ping_frame(seq, now, echo, held, consumed))
        return seq

    def _queue_control(self, frame: bytes) -> None:
        control = self._control
        if control is None:
            self._control = frame
        elif type(control) is bytearray:
            control += frame
        else:
            self._control = bytearray(control) + frame

    def _send_hello(self) -> None:
        if self._hello is not None:
            self._queue_control(self._hello)
            self._hello = None

    def _emit_data(self, out: bytearray, budget: int | None) -> None:
        assert self.negotiated is not None
        chunk_max = min(self.limits.chunk_size, self.negotiated.peer.max_frame_size)
        outbox = self._outbox
        assert outbox is not None
        budget = _UNLIMITED if budget is None else budget
        credit = self._send_credit
        sent = 0
        whole = 0  # messages whose last chunk went out
        pack = HEADER.pack
        # The driver reports what it still holds: remember where each message ends.
        held = self._held if self._tracks_output else None
        if held is None and self._tracks_output:
            held = self._held = deque()
        base = self._out_offset
        while outbox and budget > 0:
            message = outbox[0]
            offset = self._outbox_offset
            remaining = len(message) - offset
            if (
                not offset
                and remaining <= chunk_max
                and remaining <= budget
                and remaining + MESSAGE_OVERHEAD <= credit
            ):
                # The common case: a whole small message in one frame, no slicing.
                out += pack(FrameKind.DATA, FLAG_FIN, remaining)
                out += message
                outbox.popleft()
                whole += 1
                if held is not None:
                    held.append((base + len(out), message))
                credit -= remaining + MESSAGE_OVERHEAD
                budget -= remaining
                sent += remaining
                continue
            size = min(chunk_max, remaining, budget)
            final = size == remaining
            cost = size + MESSAGE_OVERHEAD if final else size
            if cost > credit:
                # Send what the credit allows as a non-final chunk; the overhead of the
                # final chunk waits for the next CREDIT.
                size = min(size, credit, remaining - 1)
                if size <= 0:
                    break
                final = False
                cost = size
            out += pack(FrameKind.DATA, FLAG_FIN if final else 0, size)
            out += memoryview(message)[offset : offset + size]
            credit -= cost
            budget -= size
            sent += size
            if final:
                outbox.popleft()
                self._outbox_offset = 0
                whole += 1
                if held is not None:
                    held.append((base + len(out), message))
            else:
                self._outbox_offset = offset + size
        self._send_credit = credit
        self._pending_bytes -= sent
        self._messages_out += whole

    def _grant_credit(self) -> None:
        # Report consumption in batches of a quarter window; but at once when the peer is
        # left with too little credit to finish even a one-byte chunk: the rest of the window
        # may be held by the message it is sending, which we cannot consume until it ends.
        unreported = self._consumed_unreported
        if unreported and (unreported * 4 >= self._window or self._recv_credit <= MESSAGE_OVERHEAD):
            starved = self._recv_credit <= MESSAGE_OVERHEAD
            self._consumed_unreported = 0
            self._recv_credit += unreported
            consumed = self._messages_consumed if self._receipts else None
            self._queue_control(encode_control(FrameKind.CREDIT, Credit(unreported, consumed)))
            if self._message_since != math.inf:
                if starved:
                    # The peer could not go on with its message for want of credit: its
                    # window starts again now (dated by our latest input).
                    self._message_since = self._clock
                    self._message_mark = self._partial_size
                self._set_inbound_deadline()

    def _check_open(self, operation: str) -> None:
        if self.death is not None:
            error = LocalClosedError if self.death.reason is Reason.LOCAL_CLOSE else PeerDeadError
            raise error(self.death)
        if self._state is State.CLOSING:
            raise UsageError(f"cannot {operation}: close() was called")

    # ------------------------------------------------------------------ input internals

    def _evidence(self, now: float) -> None:
        tracker = self._tracker
        if tracker is None:
            self._handshake_evidence = now
            return
        silence = now - tracker.last_evidence
        if tracker.evidence(now):
            self._refresh_suspicion(now, silence, SuspectCause.SILENCE)

    def _refresh_suspicion(self, now: float, silence: float, cause: SuspectCause) -> None:
        """Move between ALIVE and SUSPECT when the reasons for suspicion change."""
        tracker = self._tracker
        assert tracker is not None
        suspect = tracker.suspected or self._peer_stuck_for > 0
        state = self._state
        if suspect and state is State.ALIVE:
            self._state = next_state(state, Trigger.SILENCE)
            self._events.append(Suspected(silence, cause))
        elif not suspect and state is State.SUSPECT:
            self._state = next_state(state, Trigger.EVIDENCE)
            self._events.append(Recovered(silence))

    def _handle_frame(self, frame: Frame, now: float) -> None:
        kind = frame.kind
        if kind is FrameKind.DATA:
            self._handle_data(frame, now)
            return
        payload: Hello | Ping | Pong | Close | Credit | None = None
        if kind is FrameKind.PING or kind is FrameKind.PONG:
            payload = decode_heartbeat(kind, frame.payload)  # the layouts every peer writes
        if payload is None:
            payload = self._decode_control(frame)
        if isinstance(payload, Hello):
            self._handle_hello(payload, now)
            return
        if self.negotiated is None:
            if isinstance(payload, Close):
                self._handle_refusal(payload, now)
                return
            raise HandshakeError(f"expected HELLO, got {kind.name}")
        if isinstance(payload, Ping):
            self._handle_ping(payload, now)
        elif isinstance(payload, Pong):
            self._handle_pong(payload, now)
        elif isinstance(payload, Credit):
            self._send_credit += payload.increment
            if self._send_credit > _MAX_CREDIT:
                raise ProtocolError("peer granted absurd credit", CloseCode.FLOW_CONTROL)
            consumed = payload.consumed
            if consumed is not None and consumed != self._peer_consumed and self._receipts:
                self._peer_consumed_up_to(consumed)
        elif isinstance(payload, Close):
            self._handle_close(payload, now)

    @staticmethod
    def _decode_control(frame: Frame) -> Hello | Ping | Pong | Close | Credit:
        kind = frame.kind
        try:
            payload: Hello | Ping | Pong | Close | Credit = _DECODERS[kind].decode(frame.payload)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            # RecursionError: msgspec skips unknown trailing fields recursively, so a deeply
            # nested one is a way to attack the decoder, not a reason to crash.
            error_type = HandshakeError if kind is FrameKind.HELLO else ProtocolError
            detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise error_type(f"malformed {kind.name} payload: {detail}") from None
        return payload

    def _handle_refusal(self, close: Close, now: float) -> None:
        """The peer closed before its HELLO: it refused ours (or is shutting down)."""
        blames_us = close.code in _PEER_BLAMES_US
        code = CloseCode(close.code) if close.code in _CLOSE_CODES else None
        text = f"the peer refused the handshake with close code {close.code}"
        if close.reason:
            text += f": {close.reason}"
        self._die(
            Reason.PROTOCOL_ERROR if blames_us else Reason.EOF,
            Source.PEER,
            now,
            abort=False,
            error=HandshakeError(text, code) if blames_us else None,
            close_code=close.code,
            close_reason=close.reason,
        )

    def _handle_hello(self, hello: Hello, now: float) -> None:
        if self.negotiated is not None:
            raise ProtocolError("HELLO received twice")
        policy = self.policy
        ping_interval = max(policy.interval, hello.min_interval)
        if ping_interval >= policy.timeout:
            raise HandshakeError(
                f"the peer accepts pings at most every {hello.min_interval} s, which cannot "
                f"detect a dead peer within our timeout of {policy.timeout} s",
                CloseCode.POLICY_MISMATCH,
            )
        negotiated = self.negotiated = Negotiated(
            peer=hello,
            ping_interval=ping_interval,
            peer_ping_interval=max(hello.interval, policy.min_peer_interval),
        )
        self._send_hello()  # the responder accepts: now it introduces itself
        features = Feature(hello.features) & FEATURES  # unknown bits: a newer peer's
        self._echo = Feature.ECHO in features
        self._progress = Feature.PROGRESS in features
        self._receipts = Feature.RECEIPTS in features
        if self.initiator:
            # Our HELLO went out when the session started, and the responder sends its own
            # only once it has ours: the first round trip, measured before any ping.
            self._rtt.add(now - self._started)
        self._send_credit = hello.window
        # The peer may ping every PING_TOLERANCE of its interval, and in a burst as many
        # pings as a stall of our whole timeout could hold back (TCP delivers pings queued
        # behind a retransmission together): beyond that we would have convicted it anyway.
        # Our own timeout, not the peer's claim: a peer cannot buy itself a bigger burst.
        self._ping_gap = gap = negotiated.peer_ping_interval * PING_TOLERANCE
        self._pings_depth = (_PING_BURST + policy.timeout / gap) * gap
        self._pings_full_at = now
        self._tracker = LivenessTracker(
            policy,
            now=now,
            interval=ping_interval,
            leads=self.initiator,
            echo=self._echo,
            rng=self._rng,
        )
        if self._state is State.HANDSHAKE:
            self._state = next_state(self._state, Trigger.HANDSHAKE_DONE)
        self._events.append(
            HandshakeCompleted(hello.name, ping_interval, negotiated.peer_ping_interval)
        )

    def _handshake_timed_out(self, now: float) -> None:
        error = HandshakeError(
            f"no HELLO within {self.policy.handshake_timeout} s", CloseCode.HANDSHAKE_TIMEOUT
        )
        # Say why, best effort: the driver drops the connection if it cannot flush.
        self._queue_control(
            encode_control(FrameKind.CLOSE, Close(CloseCode.HANDSHAKE_TIMEOUT, str(error)))
        )
        self._die(
            Reason.TIMEOUT,
            Source.HEARTBEAT,
            now,
            abort=False,
            error=error,
            close_code=CloseCode.HANDSHAKE_TIMEOUT,
            close_reason=str(error),
        )

    def _handle_data(self, frame: Frame, now: float) -> None:
        if self.negotiated is None:
            raise HandshakeError("expected HELLO, got DATA")
        size = len(frame.payload)
        final = bool(frame.flags & FLAG_FIN)
        if not final and size == 0:
            raise ProtocolError("empty non-final DATA chunk")
        credit = self._recv_credit = self._recv_credit - (
            size + MESSAGE_OVERHEAD if final else size
        )
        if credit <= MESSAGE_OVERHEAD:
            if credit < 0:
                raise ProtocolError("peer sent more DATA than its credit", CloseCode.FLOW_CONTROL)
            self._grant_credit()
        if self._partial_size + size > self.limits.max_message_size:
            raise ProtocolError(
                f"message exceeds max_message_size ({self.limits.max_message_size} bytes)",
                CloseCode.TOO_LARGE,
            )
        if not final:
            if not self._partial:  # the message's first window starts with its first chunk
                self._message_since = now
                self._message_mark = 0
                self._set_inbound_deadline()
            self._partial.append(frame.payload)
            self._partial_size += size
            return
        if self._partial:
            self._partial.append(frame.payload)
            data = b"".join(self._partial)
            self._partial.clear()
            self._partial_size = 0
            if self._message_since != math.inf:
                self._message_since = math.inf
                self._set_inbound_deadline()
        else:
            data = frame.payload
        self._messages_received += 1
        unconsumed = self._unconsumed_since
        if unconsumed is None:
            unconsumed = self._unconsumed_since = deque()
        unconsumed.append(now)
        self._events.append(MessageReceived(data))

    def _handle_ping(self, ping: Ping, now: float) -> None:
        sent_at = ping.sent_at
        if not math.isfinite(sent_at):
            raise ProtocolError(f"PING carries a time that is not a number ({sent_at})")
        self._pings_received += 1
        self._spend_ping_token(now)
        consumed = ping.consumed
        if consumed is not None and consumed != self._peer_consumed and self._progress:
            self._peer_consumed_up_to(consumed)
        tracker = self._tracker
        if self._echo and ping.echo is not None and ping.echo == self._stamp_sent:
            # Our latest PONG's stamp, back after a round trip and the time it was held.
            rtt = now - ping.echo - ping.held
            if ping.held >= 0.0 and rtt >= 0.0:
                self._rtt.add(rtt)
                if tracker is not None:
                    tracker.round_trip(rtt)  # adaptive policies learn from the peer's turns
        if tracker is not None:
            tracker.peer_pinged(now)
            if tracker.first_ping is not None and self._any_evidence:
                tracker.answered(now)  # crossed our PING: an answer as good as a PONG
        stuck_for = self._stuck_for(now) if self._unconsumed_since else 0.0
        stamp: float | None = None
        if self._echo:
            stamp = self._stamp_sent = now
        ours = self._messages_consumed if self._progress else None
        self._queue_control(pong_frame(ping.seq, sent_at, stuck_for, stamp, ours))

    def _peer_consumed_up_to(self, consumed: int) -> None:
        """The peer's application has consumed ``consumed`` of our messages so far."""
        if not self._peer_consumed <= consumed <= self._messages_out:
            raise ProtocolError(
                f"peer reports {consumed} messages consumed, but {self._peer_consumed} were "
                f"reported before and {self._messages_out} were sent whole"
            )
        self._peer_consumed = consumed

    def _spend_ping_token(self, now: float) -> None:
        """Close a peer that pings faster than the negotiated minimum, beyond a tolerance.

        A token bucket kept as one instant, the generic cell rate algorithm: the bucket is
        full again at ``max(full_at, now) + gap`` after a ping, and a ping that leaves it
        more than ``depth`` seconds from full has overdrawn it.
        """
        full_at = self._pings_full_at
        full_at = self._pings_full_at = (full_at if full_at > now else now) + self._ping_gap
        if full_at - now > self._pings_depth:
            self._pings_refused += 1
            assert self.negotiated is not None
            raise ProtocolError(
                f"peer pings faster than the negotiated minimum of "
                f"{self.negotiated.peer_ping_interval} s",
                CloseCode.TOO_MANY_PINGS,
            )

    def _stuck_for(self, now: float) -> float:
        """How long our application has been stuck, as reported in our PONGs (0.0: it is not)."""
        limit = self.policy.progress_timeout
        if limit is None or not self._unconsumed_since:
            return 0.0
        waited = now - self._unconsumed_since[0]
        return waited if waited > limit else 0.0

    def _handle_pong(self, pong: Pong, now: float) -> None:
        seq, sent_at, stuck_for = pong.seq, pong.sent_at, pong.stuck_for
        if not 1 <= seq <= self._ping_seq or not self._started <= sent_at <= now:
            raise ProtocolError(f"PONG answers a PING never sent (seq {seq})")
        if not 0.0 <= stuck_for <= _MAX_STUCK_FOR:
            raise ProtocolError(f"PONG reports an impossible stuck time ({stuck_for})")
        self._pongs_received += 1
        rtt = now - sent_at
        self._rtt.add(rtt)
        tracker = self._tracker
        if tracker is not None and tracker.first_ping is not None:
            tracker.answered(now)  # adaptive policies time the answer, not the data before it
        consumed = pong.consumed
        if consumed is not None and consumed != self._peer_consumed and self._progress:
            self._peer_consumed_up_to(consumed)
        if self._echo and pong.stamp is not None:
            self._stamp_received, self._stamp_received_at = pong.stamp, now
        wanted = self._wanted_pongs
        if wanted and seq in wanted:
            wanted.discard(seq)
            self._events.append(PingAnswered(seq, rtt))
        was_stuck = self._peer_stuck_for > 0
        self._peer_stuck_for = stuck_for
        if stuck_for > 0:
            # The peer's loop answers but its application does not progress: in strict mode
            # that is no proof of life.
            if not was_stuck:
                self._refresh_suspicion(now, self.silence(now), SuspectCause.PEER_STUCK)
            return
        if self.policy.evidence is Evidence.PONG:
            self._evidence(now)
        if was_stuck:
            self._refresh_suspicion(now, self.silence(now), SuspectCause.PEER_STUCK)

    def _handle_close(self, close: Close, now: float) -> None:
        received = close.received
        if received is not None and self._receipts:
            if not self._peer_consumed <= received <= self._messages_out:
                raise ProtocolError(
                    f"peer's CLOSE reports {received} messages received, but "
                    f"{self._peer_consumed} were consumed and {self._messages_out} sent whole"
                )
            self._peer_received = received
        if self._state is State.CLOSING:
            self._die(Reason.LOCAL_CLOSE, Source.LOCAL, now, abort=False)
            return
        # Echo the code so the peer's close completes; anything still queued is moot (and
        # reported as unsent).
        self._queue_control(self._close_bytes(close.code))
        reason = Reason.PROTOCOL_ERROR if close.code in _PEER_BLAMES_US else Reason.EOF
        self._die(
            reason,
            Source.PEER,
            now,
            abort=False,
            close_code=close.code,
            close_reason=close.reason,
        )

    def _fail(self, error: ProtocolError, now: float) -> None:
        """The peer broke the protocol: tell it why, then die."""
        reason_text = str(error).encode()[:1024].decode(errors="ignore")
        self._queue_control(self._close_bytes(error.code, reason_text))
        self._die(
            Reason.PROTOCOL_ERROR,
            Source.LOCAL,
            now,
            abort=False,
            error=error,
            close_code=error.code,
            close_reason=reason_text,
        )

    def _die(
        self,
        reason: Reason,
        source: Source,
        now: float,
        *,
        abort: bool,
        error: Exception | None = None,
        close_code: int | None = None,
        close_reason: str = "",
    ) -> None:
        self._state = next_state(self._state, Trigger.DIE)
        if reason is Reason.LOCAL_CLOSE and close_code is None:
            close_code, close_reason = self._close_code, self._close_reason
        unsent = self._unsent()
        delivered = max(self._peer_consumed, self._peer_received)
        self.death = Death(
            reason=reason,
            source=source,
            silence=self.silence(now),
            last_rtt=self._rtt.last,
            close_code=close_code,
            close_reason=close_reason,
            error=error,
            messages_sent=self._messages_sent,
            # Our own record of what reached the kernel wins over a peer that claims more.
            delivered=min(delivered, self._messages_sent - len(unsent)),
            unsent=unsent,
        )
        self._outbox = None
        self._held = None
        self._close_queued = False
        self._partial.clear()
        self._partial_size = 0
        self._frame_since = self._message_since = self._inbound_deadline = math.inf
        if abort:
            self._control = None
        self._events.append(Died(self.death, abort))

    # ------------------------------------------------------------------ bookkeeping

    def _unsent(self) -> tuple[bytes, ...]:
        """The messages whose last byte the kernel never took, in order: those the driver
        still holds (as it last reported), then the outbox (its head perhaps half sent)."""
        unsent: list[bytes] = []
        held = self._held
        if held:
            upto = self._written_upto
            unsent += [message for end, message in held if end > upto]
        if self._outbox:
            unsent += self._outbox
        return tuple(unsent)

    def _unwritten_count(self) -> int:
        """How many messages passed to send_message the kernel has not taken whole."""
        held = self._held
        upto = self._written_upto
        in_driver = sum(1 for end, _ in held if end > upto) if held else 0
        return self._messages_sent - self._messages_out + in_driver

    def _close_bytes(self, code: int, reason: str = "") -> bytes:
        """A CLOSE frame; with ``Feature.RECEIPTS`` it says how many messages we received."""
        received = self._messages_received if self._receipts else None
        return encode_control(FrameKind.CLOSE, Close(code, reason, received))

    def _set_inbound_deadline(self) -> None:
        """Recompute the deadline on what the peer started (see Limits)."""
        limits = self.limits
        deadline = self._frame_since + limits.frame_timeout
        since = self._message_since
        # No credit left: the peer waits for our application, which is no fault of its own.
        if since != math.inf and self._recv_credit > MESSAGE_OVERHEAD:
            window_end = since + limits.message_timeout
            if window_end < deadline:
                deadline = window_end
        self._inbound_deadline = deadline

    def _inbound_progressed(self, now: float) -> bool:
        """At an inbound deadline: True if only a message's window ended, and the message
        grew enough in it (a new window starts); False if the peer is too slow."""
        limits = self.limits
        if now >= self._frame_since + limits.frame_timeout:
            return False
        grown = self._partial_size - self._message_mark
        if grown < limits.min_message_rate * limits.message_timeout:
            return False
        self._message_since = now
        self._message_mark = self._partial_size
        self._set_inbound_deadline()
        return True

    def _too_slow(self, now: float) -> ProtocolError:
        limits = self.limits
        if now >= self._frame_since + limits.frame_timeout:
            text = (
                f"a frame was not completed within frame_timeout ({limits.frame_timeout} s): "
                f"{self._decoder.buffered} bytes of it in {now - self._frame_since:.1f} s"
            )
        else:
            grown = self._partial_size - self._message_mark
            text = (
                f"a message grew by {grown} bytes in {now - self._message_since:.1f} s, less "
                f"than min_message_rate ({limits.min_message_rate:g} bytes/s) over "
                f"message_timeout ({limits.message_timeout} s)"
            )
        return ProtocolError(text, CloseCode.TOO_SLOW)


def _check_close(code: int, reason: str) -> None:
    """What the application may put in a CLOSE: a valid code, a reason of at most 1 KiB."""
    if not CloseCode.is_valid(code):
        raise UsageError(f"invalid close code {code}: use a CloseCode or 4000-4999")
    if len(reason.encode()) > 1024:
        raise UsageError("close reason longer than 1024 bytes")
