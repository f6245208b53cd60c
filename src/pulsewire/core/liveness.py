"""The liveness tracker: evidence in, PING / SUSPECT / DEAD decisions and one deadline out.

It knows nothing of frames or sockets, so it also serves protocols that keep their own
framing and only want dead-peer detection. Feed it, with a monotonic ``now``:

- :meth:`LivenessTracker.evidence` whenever the peer shows it is alive (any bytes, or only
  answers to your pings: your choice, see :class:`~pulsewire.core.policy.Evidence`);
- :meth:`LivenessTracker.sent` whenever you write anything to the peer;
- :meth:`LivenessTracker.answered` when a heartbeat frame arrives that answers a ping (a
  PONG, or the peer's own PING; adaptive policies time these);
- :meth:`LivenessTracker.peer_pinged` when the peer pings you;
- :meth:`LivenessTracker.round_trip` with a round trip timed without a ping of yours (under
  pulsewire's ``Feature.ECHO``: your PONG and the peer's next PING; adaptive policies learn
  from it).

Ask it :meth:`LivenessTracker.next_deadline` (pure), and at that time call
:meth:`LivenessTracker.poll`: it says whether to send a ping, and whether the peer has
become SUSPECT or DEAD.

Every deadline is derived on demand from a few instants; evidence only stores a time, so a
busy connection costs one comparison per read. The rules, each written once below:

- **next ping** (:meth:`~LivenessTracker.next_ping_at`):
  ``max(min(last_evidence, last_sent), last_ping) + ping_delay``. A side pings when it has
  *received* nothing for an interval (it needs evidence) or *sent* nothing for an interval
  (its peer needs evidence: the receiver of a one-way bulk transfer must still prove it is
  alive, and its PING travels the idle reverse path). On an idle connection one exchange
  per interval resets both clocks on both sides, so one side leads: the *leader* draws
  ``ping_delay`` from ``interval`` shortened by 0..``jitter`` of it, the follower from
  ``interval`` lengthened by as much. While the leader's pings arrive the follower never
  pings; when they stop, it pings within ``interval * (1 + jitter)`` of silence. Delays are
  drawn afresh after every ping, sent or received, so that thousands of connections do not
  ping in lockstep.
- **next ping, adaptive policy**: ``max(last_ping, last_peer_ping) + ping_delay``: one
  exchange per interval, busy or idle. Application data keeps the peer alive but does not
  postpone pings: the policy must keep timing answers to know the link (a busy connection
  that never pinged would be judged by the ceiling). Both sides must learn from every
  exchange, and there are two ways:

  - with ``echo`` (the peer's PINGs bring back the stamps of our PONGs, and the round trips
    are fed to :meth:`~LivenessTracker.round_trip`: pulsewire's ``Feature.ECHO``), one side
    leads, as under a fixed policy: the leader draws ``ping_delay`` from ``interval``
    shortened by 0.2-0.8 ``jitter``, and times the answers; the follower draws it from
    ``interval`` lengthened by 0-0.2 ``jitter``, so it pings only when the leader has
    been silent for an interval, and learns from the echoes. A follower only answers,
    which is the cheaper half of an exchange, as under a fixed policy;
  - without it the sides take turns, so that each times answers to pings of its own:
    after the peer's PING a side draws ``ping_delay`` from the leader's range, after its
    own PING from the top of it (``interval`` shortened by 0-0.2 ``jitter``), so the
    peer's turn comes first, and when the peer does not take its turn (it is gone, or a
    non-adaptive responder), a side still pings within one interval of its own last PING.

  Either way the exchanges are as many as a leader makes, and the frames each way are
  0.8-0.95 intervals apart (at the default ``jitter``), well inside a timeout of 1.2.
- **suspect** (:meth:`~LivenessTracker.suspect_at`): ``last_evidence + suspect_after``.
- **dead** (:meth:`~LivenessTracker.dead_at`): ``last_evidence + timeout``.

With an adaptive policy, ``timeout`` (and ``suspect_after`` unless the policy fixes it)
follows the response delays sampled: once per answered ping, never per frame. It is
recomputed whenever the estimator refreshes its figures: at once after an answer that
came late (:attr:`~pulsewire.core.estimators.ResponseEstimator.late_above`), and
otherwise after every :attr:`~pulsewire.core.estimators.ResponseEstimator.REFRESH_EVERY`
answers: an on-time answer moves it by little, and recomputing it costs more than the
rest of an exchange.
A response delay runs from the first PING not yet answered to
:meth:`LivenessTracker.answered`, the next heartbeat frame from the peer (its PONG, or its
own PING). Application data is evidence of life, not an answer: on a busy connection it
would time the application's traffic, not the path.
"""

from __future__ import annotations

import enum
import random

from pulsewire.core.estimators import ResponseEstimator, phi_to_z
from pulsewire.core.policy import ADAPTIVE_EARLY, Adaptive, Policy, adaptive_leader_delays
from pulsewire.errors import PolicyError

__all__ = ["Decision", "LivenessTracker"]


class Decision(enum.Flag):
    """What :meth:`LivenessTracker.poll` found due."""

    NONE = 0  #: nothing is due
    PING = enum.auto()  #: send a PING now
    SUSPECT = enum.auto()  #: silence passed ``suspect_after``
    DEAD = enum.auto()  #: silence passed ``timeout``


_SUSPECT_AND_PING = Decision.SUSPECT | Decision.PING


class LivenessTracker:
    """Decides when to ping and when the peer is suspect or dead. No clock, no I/O."""

    __slots__ = (
        "_adaptive",
        "_ceiling",
        "_delays_after_peer_ping",
        "_delays_after_ping",
        "_fixed_suspect_after",
        "_rng",
        "_tail_target",
        "_z",
        "first_ping",
        "interval",
        "last_evidence",
        "last_peer_ping",
        "last_ping",
        "last_sent",
        "ping_delay",
        "responses",
        "suspect_after",
        "suspected",
        "timeout",
    )

    def __init__(
        self,
        policy: Policy,
        *,
        now: float,
        interval: float | None = None,
        leads: bool = True,
        echo: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        """``interval``: the ping interval in force (negotiated with the peer; default
        ``policy.interval``). ``leads``: this side pings an idle connection first (see the
        module docstring). ``echo``: under an adaptive policy, :meth:`round_trip` is fed a
        round trip from each of the peer's PINGs, so the sides need not take turns (see
        the module docstring). ``rng`` draws the ping jitter; pass a seeded one for
        repeatable runs (default: a new generator)."""
        interval = policy.interval if interval is None else interval
        if not 0 < interval < policy.timeout:
            raise PolicyError(
                f"interval ({interval} s) must be positive and shorter than the policy's "
                f"timeout ({policy.timeout} s)"
            )
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
        self._rng = rng if rng is not None else random.Random()
        # Delays are drawn from (start, width): between start and start + width seconds.
        jitter = interval * policy.jitter
        if policy.adaptive is None:  # leader [1 - jitter, 1]; follower [1, 1 + jitter]
            first = after_ping = after_peer_ping = (
                (interval - jitter, jitter) if leads else (interval, jitter)
            )
        else:  # see the module docstring
            least = ADAPTIVE_EARLY[0]
            leader = adaptive_leader_delays(interval, jitter)
            if echo:  # one leader; the follower waits as long past the interval
                first = after_ping = after_peer_ping = (
                    leader if leads else (interval, least * jitter)
                )
            else:  # turns, within the leader's range
                after_peer_ping = leader
                after_ping = (interval - least * jitter, least * jitter)
                first = after_peer_ping if leads else after_ping
        self._delays_after_ping = after_ping
        self._delays_after_peer_ping = after_peer_ping
        self._adaptive: Adaptive | None = policy.adaptive
        self.responses: ResponseEstimator | None = None
        self._z = 0.0
        self._tail_target: float | None = None
        if policy.adaptive is not None:
            adaptive = policy.adaptive
            self.responses = ResponseEstimator(
                adaptive.window,
                rto_min=adaptive.rto_min,
                loss_memory=adaptive.loss_memory,
                extra=adaptive.tail_extra,
                clean_after=adaptive.clean_after,
                warmup=adaptive.warmup,
            )
            self._z = phi_to_z(adaptive.threshold)
            if adaptive.tail_threshold is not None:
                self._tail_target = 10.0**-adaptive.tail_threshold
        self.last_evidence = now  #: the latest evidence of life
        self.last_sent = now  #: when we last wrote anything to the peer
        self.last_ping = now  #: when we last sent a PING
        self.last_peer_ping = now  #: when the peer last pinged us
        self.first_ping: float | None = None  #: adaptive: the first PING not yet answered
        self.suspected = False
        self.ping_delay = self._draw_delay(first)

    # ------------------------------------------------------------------ inputs

    def evidence(self, now: float) -> bool:
        """Record evidence of life; return True when it ends a suspicion."""
        if now > self.last_evidence:
            self.last_evidence = now
        if self.suspected:
            self.suspected = False
            return True
        return False

    def answered(self, now: float) -> None:
        """A heartbeat frame came from the peer: a PONG, or its own PING. With an adaptive
        policy, the first one after our unanswered PING is a response sample. (Record it as
        :meth:`evidence` too, if it counts as evidence.)"""
        first = self.first_ping
        if first is not None:  # only ever set under an adaptive policy
            self.first_ping = None
            responses = self.responses
            assert responses is not None
            if responses.add(now - first):
                self._recompute(responses)

    def round_trip(self, delay: float) -> None:
        """A round trip timed without a PING of ours, such as our PONG and the peer's next
        PING, less the time the peer held it. An adaptive policy learns from it as from an
        answer: under turns, the frames of the peer's turns cross the same path late as
        often as ours, and their silences count against the peer just the same."""
        responses = self.responses
        if responses is not None and responses.add(delay):
            self._recompute(responses)

    def sent(self, now: float) -> None:
        """Record that something went out to the peer."""
        if now > self.last_sent:
            self.last_sent = now

    def peer_pinged(self, now: float) -> None:
        """The peer pinged us at ``now``: draw our next delay afresh (under an adaptive
        policy in turns, the next turn is ours: we too must time answers of our own).
        """
        if now > self.last_peer_ping:
            self.last_peer_ping = now
        self.ping_delay = self._draw_delay(self._delays_after_peer_ping)

    def poll(self, now: float) -> Decision:
        """What is due at ``now``; a PING it returns is recorded as sent at ``now``.

        Call it at (or after) :meth:`next_deadline`; earlier, it finds nothing due.
        """
        if now >= self.dead_at():
            return Decision.DEAD
        suspect = not self.suspected and now >= self.suspect_at()
        if suspect:
            self.suspected = True
        if now < self.next_ping_at():
            return Decision.SUSPECT if suspect else Decision.NONE
        self.pinged(now)
        return _SUSPECT_AND_PING if suspect else Decision.PING

    def pinged(self, now: float) -> None:
        """A PING went out at ``now`` (as :meth:`poll` records the ones it asks for)."""
        if self.first_ping is None and self.responses is not None:
            self.first_ping = now
        self.last_ping = self.last_sent = now
        self.ping_delay = self._draw_delay(self._delays_after_ping)

    # ------------------------------------------------------------------ queries (pure)

    def next_ping_at(self) -> float:
        """When a PING is due (see the module docstring)."""
        last_ping = self.last_ping
        if self.responses is not None:  # adaptive: data does not postpone pings
            heard = self.last_peer_ping
            return (last_ping if last_ping > heard else heard) + self.ping_delay
        evidence, sent = self.last_evidence, self.last_sent
        quiet_since = evidence if evidence < sent else sent
        return (last_ping if last_ping > quiet_since else quiet_since) + self.ping_delay

    def suspect_at(self) -> float:
        """When continued silence makes the peer SUSPECT."""
        return self.last_evidence + self.suspect_after

    def dead_at(self) -> float:
        """When continued silence makes the peer DEAD."""
        return self.last_evidence + self.timeout

    def next_deadline(self) -> float:
        """The earliest instant at which :meth:`poll` has something to do."""
        deadline = self.next_ping_at()
        dead_at = self.dead_at()
        if dead_at < deadline:
            deadline = dead_at
        if not self.suspected:
            suspect_at = self.suspect_at()
            if suspect_at < deadline:
                deadline = suspect_at
        return deadline

    def silence(self, now: float) -> float:
        """Seconds since the last evidence of life."""
        return max(0.0, now - self.last_evidence)

    # ------------------------------------------------------------------ internals

    def _draw_delay(self, delays: tuple[float, float]) -> float:
        start, width = delays
        return start + width * self._rng.random()

    def _recompute(self, responses: ResponseEstimator) -> None:
        """Adaptive policy: the estimator refreshed its figures (one answer in about
        ``REFRESH_EVERY``, or a late one): derive the timeout from them."""
        adaptive = self._adaptive
        assert adaptive is not None
        if len(responses) < adaptive.warmup:
            return  # refreshed early by a reader: the ceiling stands until the warm-up ends
        allowance = responses.allowance(self._z, adaptive.min_std, self._tail_target)
        interval = self.interval
        self.timeout = min(self._ceiling, max(adaptive.min_timeout, interval + allowance))
        if self._fixed_suspect_after is None:
            self.suspect_after = interval + (self.timeout - interval) / 2
