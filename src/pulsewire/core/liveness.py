"""The liveness tracker: evidence in, PING / SUSPECT / DEAD decisions and one deadline out.

Evidence arriving only stores a timestamp: it never recomputes or reschedules anything, so
a busy connection costs one attribute store per read. The deadline is derived on demand
from three instants, all measured from the last evidence (or the last ping, for pings):

- ``next_ping_at``: ``max(min(last_evidence, last_sent), last_ping) + ping_delay``. A side
  pings when it has *received* nothing for an interval (it needs evidence) or *sent*
  nothing for an interval (its peer needs evidence: a receiver of a one-way bulk transfer
  must still prove it is alive, and its PING travels the idle reverse path while the
  sender's own PINGs queue behind the data). On an idle connection one PING/PONG exchange
  per interval resets both clocks on both sides, so one side leads: the *leader* (the
  initiator) draws ``ping_delay`` from ``interval`` shortened by 0..jitter of it, the
  follower from ``interval`` lengthened by as much. While the leader's pings arrive the
  follower never pings; when they stop, it pings within ``interval * (1 + jitter)`` of
  silence. Both delays are drawn afresh after every ping, sent or received, so thousands
  of connections do not ping in lockstep. (With an adaptive policy both sides lead: each
  must time answers to its own pings to learn the link);
- ``suspect_at``: ``last_evidence + suspect_after``;
- ``dead_at``: ``last_evidence + timeout``.

With an adaptive policy, ``timeout`` (and ``suspect_after`` unless fixed by the policy)
is recomputed only when a response delay is sampled: once per answered silence, never
per frame.
"""

from __future__ import annotations

import enum
import random
from array import array

from pulsewire.core.estimators import ResponseEstimator, phi_to_z
from pulsewire.core.policy import Adaptive, Policy
from pulsewire.core.record import (
    DELAY_SPAN,
    FIRST_PING,
    INTERVAL,
    LAST_EVIDENCE,
    LAST_PING,
    LAST_SENT,
    NO_TIME,
    PING_DELAY,
    SUSPECT_AFTER,
    TIMEOUT,
    new_record,
)

__all__ = ["Decision", "LivenessTracker"]

#: Timers may fire up to a clock tick early (uvloop's clock ticks in milliseconds): a
#: deadline this close counts as reached, or the driver would spin until the clock ticks.
EPSILON = 1e-3


class Decision(enum.Flag):
    NONE = 0
    PING = enum.auto()  #: send a PING now
    SUSPECT = enum.auto()  #: silence passed ``suspect_after``
    DEAD = enum.auto()  #: silence passed ``timeout``


_PING = Decision.PING._value_
_SUSPECT = Decision.SUSPECT._value_
# Every combination, built once: composing Flag members per poll is slow.
_DECISIONS = [Decision(bits) for bits in range(8)]


class LivenessTracker:
    """Decides when to ping and when the peer is suspect or dead. Pure: no clock, no I/O.

    Its times and timeouts live in the connection's record (:mod:`pulsewire.core.record`),
    shared with the session; the attributes of the same names read them.
    """

    __slots__ = (
        "_adaptive",
        "_ceiling",
        "_fixed_suspect_after",
        "_tail_target",
        "_z",
        "record",
        "responses",
        "rng",
        "suspected",
    )

    def __init__(
        self,
        policy: Policy,
        interval: float,
        now: float,
        rng: random.Random,
        *,
        leads: bool = True,
        record: array[float] | None = None,
    ) -> None:
        """``leads``: this side pings an idle connection first (see the module docstring).
        ``record``: the connection's record (a session passes its own), else a new one."""
        self.record = r = new_record(now) if record is None else record
        r[LAST_EVIDENCE] = r[LAST_SENT] = r[LAST_PING] = now
        r[FIRST_PING] = NO_TIME
        r[INTERVAL] = interval
        self._ceiling = r[TIMEOUT] = policy.timeout
        self._fixed_suspect_after = policy.suspect_after
        # Halfway from the *negotiated* interval to the timeout, unless the policy fixes it:
        # a peer that forces a slower interval must not make every idle cycle look suspect.
        r[SUSPECT_AFTER] = (
            policy.suspect_after
            if policy.suspect_after is not None
            else interval + (policy.timeout - interval) / 2
        )
        self.rng = rng
        # Leader: delays in [1 - jitter, 1] * interval; follower: [1, 1 + jitter] * interval.
        lead = -1.0 if leads or policy.adaptive is not None else 1.0
        r[DELAY_SPAN] = interval * lead * policy.jitter
        self._adaptive: Adaptive | None = policy.adaptive
        self.responses: ResponseEstimator | None = None
        self._z = 0.0
        self._tail_target: float | None = None
        if policy.adaptive is not None:
            adaptive = policy.adaptive
            self.responses = ResponseEstimator(
                adaptive.window, rto_min=adaptive.rto_min, loss_memory=adaptive.loss_memory
            )
            self._z = phi_to_z(adaptive.threshold)
            if adaptive.tail_threshold is not None:
                self._tail_target = 10.0**-adaptive.tail_threshold
        self.suspected = False
        r[PING_DELAY] = self._draw_delay()

    # The record's fields, by name (the heartbeat paths index the record directly).

    @property
    def last_evidence(self) -> float:
        return self.record[LAST_EVIDENCE]

    @property
    def last_sent(self) -> float:
        return self.record[LAST_SENT]

    @property
    def last_ping(self) -> float:
        return self.record[LAST_PING]

    @property
    def ping_delay(self) -> float:
        return self.record[PING_DELAY]

    @property
    def first_ping(self) -> float | None:
        """The first PING sent into the current silence, if any."""
        first = self.record[FIRST_PING]
        return None if first == NO_TIME else first

    @property
    def interval(self) -> float:
        return self.record[INTERVAL]

    @property
    def timeout(self) -> float:
        return self.record[TIMEOUT]

    @property
    def suspect_after(self) -> float:
        return self.record[SUSPECT_AFTER]

    def _draw_delay(self) -> float:
        # The session's fast paths draw with this same expression (inlined).
        r = self.record
        return r[INTERVAL] + r[DELAY_SPAN] * self.rng.random()

    def peer_pinged(self) -> None:
        """The peer pinged us: draw our next delay afresh, as if we had pinged.

        Otherwise the side that loses the race once keeps its (longer) delay and keeps
        losing: it would never ask, and so never learn response delays of its own.
        """
        self.record[PING_DELAY] = self._draw_delay()

    def evidence(self, now: float) -> bool:
        """Record evidence of life; return True when it ends a suspicion."""
        r = self.record
        if now > r[LAST_EVIDENCE]:
            r[LAST_EVIDENCE] = now
        first = r[FIRST_PING]
        if first != NO_TIME:
            if self.responses is not None:
                self._learn(now - first)
            r[FIRST_PING] = NO_TIME
        if self.suspected:
            self.suspected = False
            return True
        return False

    def _learn(self, delay: float) -> None:
        """Adaptive policy: one more response delay; recompute the timeout."""
        responses = self.responses
        adaptive = self._adaptive
        assert responses is not None
        assert adaptive is not None
        responses.add(delay)
        if len(responses) < adaptive.warmup:
            return
        r = self.record
        interval = r[INTERVAL]
        allowance = responses.allowance(self._z, adaptive.min_std, self._tail_target)
        timeout = r[TIMEOUT] = min(self._ceiling, max(adaptive.min_timeout, interval + allowance))
        if self._fixed_suspect_after is None:
            r[SUSPECT_AFTER] = interval + (timeout - interval) / 2

    def silence(self, now: float) -> float:
        return max(0.0, now - self.record[LAST_EVIDENCE])

    def sent(self, now: float) -> None:
        """Record that frames went out to the peer."""
        r = self.record
        if now > r[LAST_SENT]:
            r[LAST_SENT] = now

    def next_ping_at(self) -> float:
        # Comparisons rather than min()/max(): this runs after every input of every connection.
        r = self.record
        evidence = r[LAST_EVIDENCE]
        sent = r[LAST_SENT]
        quiet_since = evidence if evidence < sent else sent
        last_ping = r[LAST_PING]
        return (last_ping if last_ping > quiet_since else quiet_since) + r[PING_DELAY]

    def deadline(self) -> float:
        r = self.record
        evidence = r[LAST_EVIDENCE]
        sent = r[LAST_SENT]  # next_ping_at() inlined: this runs after every input
        quiet_since = evidence if evidence < sent else sent
        last_ping = r[LAST_PING]
        deadline = (last_ping if last_ping > quiet_since else quiet_since) + r[PING_DELAY]
        dead_at = evidence + r[TIMEOUT]
        if dead_at < deadline:
            deadline = dead_at
        if not self.suspected:
            suspect_at = evidence + r[SUSPECT_AFTER]
            if suspect_at < deadline:
                deadline = suspect_at
        return deadline

    def poll(self, now: float) -> Decision:
        """What is due at ``now``. Records the ping as sent when it returns PING."""
        r = self.record
        due = now + EPSILON
        if due >= r[LAST_EVIDENCE] + r[TIMEOUT]:
            return Decision.DEAD
        bits = 0
        if not self.suspected and due >= r[LAST_EVIDENCE] + r[SUSPECT_AFTER]:
            self.suspected = True
            bits = _SUSPECT
        if self.ping_if_due(now):
            bits |= _PING
        return _DECISIONS[bits]

    def ping_if_due(self, now: float) -> bool:
        """Whether a PING is due at ``now``; if so, record it as sent. Ignores suspicion."""
        r = self.record
        evidence = r[LAST_EVIDENCE]  # next_ping_at() inlined: once per interval per connection
        sent = r[LAST_SENT]
        quiet_since = evidence if evidence < sent else sent
        last_ping = r[LAST_PING]
        since = last_ping if last_ping > quiet_since else quiet_since
        if now + EPSILON < since + r[PING_DELAY]:
            return False
        if r[FIRST_PING] == NO_TIME:
            r[FIRST_PING] = now
        r[LAST_PING] = r[LAST_SENT] = now
        r[PING_DELAY] = self._draw_delay()
        return True
