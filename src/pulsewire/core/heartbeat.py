"""The session's heartbeat fields and its two heartbeat fast paths, in a base class.

An idle connection does one thing per interval: it sends a PING or answers one. These two
methods do that for a session in the plain steady state, in one call each, with none of
the general path's decoding, events or output buffer; :class:`~pulsewire.core.session.Session`
inherits them. This module is the reference implementation; ``_heartbeat.c`` beside it is the
same two methods compiled, which :data:`HeartbeatFields` is when the extension was built
(at 10,000 connections the bytecode here costs more than the rest of an exchange:
``benchmarks/RESULTS.md``, ``## bench_idle``). Set ``PULSEWIRE_NO_EXTENSIONS=1`` to run this
module's code instead. ``tests/core/test_heartbeat_fast_path.py`` runs the general path,
this module and the compiled one on the same conversations and compares everything a driver
can observe; ``tests/core/test_heartbeat_compiled.py`` compares the two implementations
field by field.

Why a base class: at 10,000 connections a cache miss per field is what the heartbeat path
costs (its numbers are in the record for the same reason: see :mod:`pulsewire.core.record`),
so the fields it touches must share as few cache lines as possible. Listing them first in
``Session.__slots__`` would not do it: CPython lays a class's slots out sorted by name. A
base class's fields come first in its subclasses' layout, so here they are: four fields,
one cache line with the object header (``tests/core/test_session_layout.py`` checks it).

Four are enough because the fast paths test one field for "steady state": ``_steady`` holds
the connection's shared :data:`Steady` constants while every condition holds (ALIVE, no
control frame or DATA waiting, the decoder between frames, no close under way, no stuck
report either way) and None otherwise. Every public method of the session that can change
one of those conditions ends by refreshing it.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Final

from pulsewire.core.estimators import RttEstimator
from pulsewire.core.frames import (
    FLOAT64_TAG,
    HEARTBEAT_FRAME_SIZE,
    MAX_FIXED_SEQ,
    PING_HEAD,
    PONG_HEAD,
    pack_heartbeat,
    unpack_heartbeat,
)
from pulsewire.core.liveness import EPSILON
from pulsewire.core.record import (
    FIRST_PING,
    LAST_EVIDENCE,
    LAST_PING,
    LAST_SENT,
    NO_SAMPLE,
    NO_TIME,
    PING_DELAY,
    PINGS_FULL_AT,
    PINGS_RECEIVED,
    RTT_STAGED,
)

__all__ = ["COMPILED", "HEARTBEAT_FIELDS", "HeartbeatFields", "PythonHeartbeatFields", "Steady"]

#: What the fast paths need of a connection in the steady state, shared by every connection
#: with the same numbers: ``(gap, depth, interval, delay_span, timeout, suspect_after, cap,
#: any_evidence, draw)``; the session builds it at the handshake (``_steady_constants``).
Steady = tuple[float, float, float, float, float, float, float, bool, Callable[[], float]]

#: The fields, in both implementations.
HEARTBEAT_FIELDS: Final = ("_ping_seq", "_record", "_rtt", "_steady")


class PythonHeartbeatFields:
    """The heartbeat fields and fast paths in Python: the reference implementation."""

    __slots__ = HEARTBEAT_FIELDS

    _ping_seq: int  #: the latest PING's sequence number: also the count of PINGs sent
    _record: array[float]  #: the connection's numbers (:mod:`pulsewire.core.record`)
    _rtt: RttEstimator
    _steady: Steady | None  #: the steady state's constants; None: not in the steady state

    # Defined by the session; the fast paths call them.
    def next_deadline(self) -> float | None:
        raise NotImplementedError

    def _steady_holds(self) -> bool:
        raise NotImplementedError

    def receive_heartbeat(
        self, frame: bytes | bytearray | memoryview, now: float
    ) -> tuple[bytes, float | None] | None:
        """Fast path for the one read an idle connection gets per interval: one PING or PONG.

        When ``frame`` is exactly one heartbeat in the fixed layout and the session is in the
        plain steady state (ALIVE, nothing queued, no adaptive timeout, no stuck report),
        handle it and return ``(reply, deadline)``: the bytes to write at once (the PONG for
        a PING, ``b""`` for a PONG) and the new :meth:`next_deadline` when it may have moved
        either way (the answer to a PING redraws our ping delay), or None when it only moved
        later (a PONG: the registered deadline can fire lazily). The driver then has no
        events to dispatch. Otherwise return None having changed nothing: the driver feeds
        the bytes to :meth:`receive_data` as usual. Both paths have the same effect
        (``tests/core/test_heartbeat_fast_path.py`` checks that they agree).

        This runs once an interval on every idle connection, so it is written flat: the
        tracker's ``evidence``, ``peer_pinged``, ``sent`` and ``deadline`` are
        inlined for the steady state, and no per-connection object is touched that the
        general path would not need.
        """
        steady = self._steady
        if steady is None or len(frame) != HEARTBEAT_FRAME_SIZE:
            return None
        assert self._steady_holds(), "a public method did not refresh _steady"
        head, seq, float_tag, sent_at = unpack_heartbeat(frame)
        if float_tag != FLOAT64_TAG:
            return None
        r = self._record
        if head == PONG_HEAD:
            # The answer to our latest PING, echoing its time to the bit (the general path
            # also takes older ones: any seq we sent, any time since the connection started).
            if not seq or seq != self._ping_seq or sent_at != r[LAST_PING]:
                return None
            # tracker.evidence(now), for a fixed policy and no suspicion:
            if now > r[LAST_EVIDENCE]:
                r[LAST_EVIDENCE] = now
            r[FIRST_PING] = NO_TIME
            # rtt.add(), every other PONG: the sample waits in the record for the next one.
            staged = r[RTT_STAGED]
            if staged == NO_SAMPLE:
                r[RTT_STAGED] = now - sent_at
            else:
                r[RTT_STAGED] = NO_SAMPLE
                rtt = self._rtt
                rtt.add(staged)
                rtt.add(now - sent_at)
            return b"", None
        if head != PING_HEAD:
            return None
        gap, depth, interval, delay_span, timeout, suspect_after, cap, any_evidence, draw = steady
        full_at = r[PINGS_FULL_AT]
        full_at = (full_at if full_at > now else now) + gap  # _pings_full_after(now)
        if full_at - now > depth:
            return None  # the general path refuses it, with the close code
        r[PINGS_FULL_AT] = full_at
        r[PINGS_RECEIVED] += 1.0
        # tracker.peer_pinged():
        delay = r[PING_DELAY] = interval + delay_span * draw()
        evidence = r[LAST_EVIDENCE]
        sent = r[LAST_SENT]
        if any_evidence and now > evidence and now > sent:
            # tracker.evidence(now), tracker.sent(now), and tracker.deadline() for both
            # clocks restarting now (our last PING went out no later than LAST_SENT):
            r[LAST_EVIDENCE] = r[LAST_SENT] = now
            r[FIRST_PING] = NO_TIME
            return pack_heartbeat(PONG_HEAD, seq, FLOAT64_TAG, sent_at), now + (
                delay if delay < cap else cap
            )
        # The same in general: tracker.evidence(now) if a PING is evidence, tracker.sent(now).
        if any_evidence:
            if now > evidence:
                r[LAST_EVIDENCE] = evidence = now
            r[FIRST_PING] = NO_TIME
        if now > sent:
            r[LAST_SENT] = sent = now
        # tracker.deadline(), not suspected, no close under way:
        quiet_since = evidence if evidence < sent else sent
        last_ping = r[LAST_PING]
        deadline = (last_ping if last_ping > quiet_since else quiet_since) + delay
        dead_at = evidence + timeout
        if dead_at < deadline:
            deadline = dead_at
        suspect_at = evidence + suspect_after
        if suspect_at < deadline:
            deadline = suspect_at
        # The fixed layout's seq fits 32 bits, and so does the echo: pong_frame(seq, sent_at).
        return pack_heartbeat(PONG_HEAD, seq, FLOAT64_TAG, sent_at), deadline

    def heartbeat_due(self, now: float) -> tuple[bytes, float] | None:
        """Fast path for the timer an idle connection gets per interval: a PING is due.

        When the session is in the plain steady state (ALIVE, nothing queued, not closing,
        no suspicion due at ``now``, the next PING's number within the fixed layout's 32
        bits), do what :meth:`handle_timer` would and return
        ``(ping, deadline)``: the bytes to write at once (the PING, or ``b""`` when nothing
        was due after all) and the new :meth:`next_deadline`. The driver then has no events
        to dispatch. Otherwise return None having changed nothing: the driver calls
        :meth:`handle_timer` as usual. Written flat, like :meth:`receive_heartbeat`.
        """
        steady = self._steady
        if steady is None:
            return None
        assert self._steady_holds(), "a public method did not refresh _steady"
        _, _, interval, delay_span, timeout, suspect_after, _, _, draw = steady
        r = self._record
        evidence = r[LAST_EVIDENCE]
        suspect_at = evidence + suspect_after
        if now + EPSILON >= suspect_at:
            return None
        # tracker.ping_if_due(now):
        sent = r[LAST_SENT]
        quiet_since = evidence if evidence < sent else sent
        last_ping = r[LAST_PING]
        if now + EPSILON < (last_ping if last_ping > quiet_since else quiet_since) + r[PING_DELAY]:
            deadline = self.next_deadline()
            if deadline is None:  # not in the steady state: let the general path see
                return None
            return b"", deadline  # a lazy fire: evidence moved the deadline since
        seq = self._ping_seq + 1
        if seq > MAX_FIXED_SEQ:
            return None  # the general encoding: handle_timer() writes it
        if r[FIRST_PING] == NO_TIME:
            r[FIRST_PING] = now
        r[LAST_PING] = r[LAST_SENT] = now
        delay = r[PING_DELAY] = interval + delay_span * draw()
        self._ping_seq = seq
        # tracker.deadline(), just after a ping (so the next one is due at now + delay):
        deadline = now + delay
        dead_at = evidence + timeout
        if dead_at < deadline:
            deadline = dead_at
        if suspect_at < deadline:
            deadline = suspect_at
        return pack_heartbeat(PING_HEAD, seq, FLOAT64_TAG, now), deadline


HeartbeatFields = PythonHeartbeatFields
#: Kept until the heartbeat path is folded into the session (no compiled twin any more).
COMPILED: Final = False
