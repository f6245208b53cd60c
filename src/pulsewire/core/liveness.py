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

from pulsewire.core.estimators import ResponseEstimator, phi_to_z
from pulsewire.core.policy import Adaptive, Policy

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
    """Decides when to ping and when the peer is suspect or dead. Pure: no clock, no I/O."""

    __slots__ = (  # noqa: RUF023 - the heartbeat's fields first: they share cache lines
        "suspected",
        "responses",
        "last_evidence",
        "last_sent",
        "last_ping",
        "ping_delay",
        "first_ping",
        "suspect_after",
        "timeout",
        "interval",
        "_lead",
        "_jitter",
        "_rng",
        "_adaptive",
        "_ceiling",
        "_fixed_suspect_after",
        "_tail_target",
        "_z",
    )

    def __init__(
        self,
        policy: Policy,
        interval: float,
        now: float,
        rng: random.Random,
        *,
        leads: bool = True,
    ) -> None:
        """``leads``: this side pings an idle connection first (see the module docstring)."""
        self.interval = interval
        self._ceiling = self.timeout = policy.timeout
        self._fixed_suspect_after = policy.suspect_after
        # Halfway from the *negotiated* interval to the timeout, unless the policy fixes it:
        # a peer that forces a slower interval must not make every idle cycle look suspect.
        self.suspect_after = (
            policy.suspect_after
            if policy.suspect_after is not None
            else interval + (policy.timeout - interval) / 2
        )
        self._rng = rng
        self._jitter = policy.jitter
        # Leader: delays in [1 - jitter, 1] * interval; follower: [1, 1 + jitter] * interval.
        self._lead = -1.0 if leads or policy.adaptive is not None else 1.0
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
        self.last_evidence = now
        self.last_ping = now
        self.last_sent = now
        self.first_ping: float | None = None  #: first PING sent into the current silence
        self.suspected = False
        self.ping_delay = self._draw_delay()

    def _draw_delay(self) -> float:
        return self.interval * (1.0 + self._lead * self._jitter * self._rng.random())

    def peer_pinged(self) -> None:
        """The peer pinged us: draw our next delay afresh, as if we had pinged.

        Otherwise the side that loses the race once keeps its (longer) delay and keeps
        losing: it would never ask, and so never learn response delays of its own.
        """
        self.ping_delay = self._draw_delay()

    def evidence(self, now: float) -> bool:
        """Record evidence of life; return True when it ends a suspicion."""
        if now > self.last_evidence:
            self.last_evidence = now
        if self.first_ping is not None:
            if self.responses is not None:
                self._learn(now - self.first_ping)
            self.first_ping = None
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
        allowance = responses.allowance(self._z, adaptive.min_std, self._tail_target)
        self.timeout = min(self._ceiling, max(adaptive.min_timeout, self.interval + allowance))
        if self._fixed_suspect_after is None:
            self.suspect_after = self.interval + (self.timeout - self.interval) / 2

    def silence(self, now: float) -> float:
        return max(0.0, now - self.last_evidence)

    def sent(self, now: float) -> None:
        """Record that frames went out to the peer."""
        if now > self.last_sent:
            self.last_sent = now

    def next_ping_at(self) -> float:
        # Comparisons rather than min()/max(): this runs after every input of every connection.
        evidence = self.last_evidence
        sent = self.last_sent
        quiet_since = evidence if evidence < sent else sent
        last_ping = self.last_ping
        return (last_ping if last_ping > quiet_since else quiet_since) + self.ping_delay

    def deadline(self) -> float:
        evidence = self.last_evidence
        sent = self.last_sent  # next_ping_at() inlined: this runs after every input
        quiet_since = evidence if evidence < sent else sent
        last_ping = self.last_ping
        deadline = (last_ping if last_ping > quiet_since else quiet_since) + self.ping_delay
        dead_at = evidence + self.timeout
        if dead_at < deadline:
            deadline = dead_at
        if not self.suspected:
            suspect_at = evidence + self.suspect_after
            if suspect_at < deadline:
                deadline = suspect_at
        return deadline

    def poll(self, now: float) -> Decision:
        """What is due at ``now``. Records the ping as sent when it returns PING."""
        due = now + EPSILON
        if due >= self.last_evidence + self.timeout:
            return Decision.DEAD
        bits = 0
        if not self.suspected and due >= self.last_evidence + self.suspect_after:
            self.suspected = True
            bits = _SUSPECT
        if self.ping_if_due(now):
            bits |= _PING
        return _DECISIONS[bits]

    def ping_if_due(self, now: float) -> bool:
        """Whether a PING is due at ``now``; if so, record it as sent. Ignores suspicion."""
        evidence = self.last_evidence  # next_ping_at() inlined: once per interval per connection
        sent = self.last_sent
        quiet_since = evidence if evidence < sent else sent
        last_ping = self.last_ping
        since = last_ping if last_ping > quiet_since else quiet_since
        if now + EPSILON < since + self.ping_delay:
            return False
        if self.first_ping is None:
            self.first_ping = now
        self.last_ping = self.last_sent = now
        self.ping_delay = self._draw_delay()
        return True

    def answered_ping(self, now: float, *, evidence: bool) -> None:
        """The peer pinged us and our PONG goes out at ``now``: :meth:`evidence` (when a
        PING counts as evidence), :meth:`peer_pinged` and :meth:`sent` in one call."""
        if evidence:
            if now > self.last_evidence:
                self.last_evidence = now
            self.first_ping = None
        if now > self.last_sent:
            self.last_sent = now
        self.ping_delay = self._draw_delay()
