"""Dead-peer detection for a protocol of your own: pulsewire's liveness engine, no wire format.

Keep your framing, your ``{"type": "ping"}`` messages and your event loop; a
:class:`Heartbeat` decides when to ping and when the peer is SUSPECT or DEAD, with every
pulsewire policy (fixed, adaptive, strict evidence) and RTT statistics. Like the rest of
the core it does no I/O and reads no clock: you feed it what happened with a monotonic
``now``, and ask it what to do::

    heartbeat = Heartbeat(Policy(interval=1.0, timeout=3.0), now=clock())

    # whenever anything arrives from the peer:
    heartbeat.heard_from(clock())              # a PING of the peer's: heartbeat.pinged(...)
    # when a pong echoes the time you put in your ping:
    heartbeat.pong(sent_at=message["sent_at"], now=clock())
    # whenever you write anything to the peer:
    heartbeat.sent(clock())

    # at heartbeat.next_deadline() (sleep until then, or poll on your own timer):
    decision = heartbeat.poll(clock())
    if Decision.PING in decision:
        send({"type": "ping", "sent_at": clock()})
    if Decision.DEAD in decision:
        drop(heartbeat.death)                  # Death(TIMEOUT, ...), with the silence

The rules are those of :class:`~pulsewire.core.liveness.LivenessTracker` (next ping,
suspect, dead, adaptive timeout) and :class:`~pulsewire.core.estimators.RttEstimator`,
which pulsewire's own sessions use; the states follow the one transition table of
:mod:`pulsewire.core.states`.
"""

from __future__ import annotations

import random

from pulsewire.core.estimators import RttEstimator
from pulsewire.core.events import Death, Source
from pulsewire.core.liveness import Decision, LivenessTracker
from pulsewire.core.policy import Evidence, Policy
from pulsewire.core.states import Reason, State, Trigger, next_state
from pulsewire.errors import UsageError

__all__ = ["Heartbeat"]


class Heartbeat:
    """Evidence and a clock in; when to ping, SUSPECT, DEAD (with its reason) and RTT out.

    ``leads``: this side pings an idle connection first. When both sides run a
    heartbeat, let the client lead and the server follow (``leads=False``): the
    follower's delays are drawn longer, so an idle connection costs one exchange per
    interval in all, not two. ``rng`` draws the ping jitter (seed it for repeatable runs).
    """

    __slots__ = ("_rtt", "_state", "_tracker", "death", "pings_sent", "policy")

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        now: float,
        leads: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        #: The policy in force.
        self.policy = policy = policy if policy is not None else Policy()
        self._tracker = LivenessTracker(policy, now=now, leads=leads, rng=rng)
        self._rtt = RttEstimator()
        self._state = next_state(State.HANDSHAKE, Trigger.HANDSHAKE_DONE)
        #: Why the peer is dead, once it is.
        self.death: Death | None = None
        #: PINGs :meth:`poll` asked for.
        self.pings_sent = 0

    # ------------------------------------------------------------------ inputs

    def heard_from(self, now: float) -> bool:
        """Something arrived from the peer. Returns True when it ends a suspicion.

        With ``Policy(evidence=Evidence.PONG)`` (strict mode) only :meth:`pong` counts:
        proof that the peer's loop answers, not merely that bytes arrive.
        """
        if self.policy.evidence is Evidence.PONG:
            return False
        return self._evidence(now)

    def pinged(self, now: float) -> bool:
        """The peer pinged you (answer it, and call :meth:`sent`). Returns as
        :meth:`heard_from`; your own next ping is drawn afresh, as if you had pinged."""
        if self.death is None:
            self._tracker.peer_pinged(now)
            if self.policy.evidence is Evidence.ANY:
                self._tracker.answered(now)  # crossed your ping: as good an answer as a pong
        return self.heard_from(now)

    def pong(self, sent_at: float, now: float) -> bool:
        """The peer answered the ping you sent at ``sent_at`` (your clock): an RTT sample,
        and evidence of life in every mode. Returns True when it ends a suspicion."""
        if not sent_at <= now:
            raise UsageError(f"a pong for a ping sent at {sent_at}, later than now ({now})")
        if self.death is not None:
            return False
        self._rtt.add(now - sent_at)
        self._tracker.answered(now)  # adaptive policies time answers, not other traffic
        return self._evidence(now)

    def sent(self, now: float) -> None:
        """You wrote something to the peer (a message, a ping, a pong)."""
        self._tracker.sent(now)

    def lost(self, reason: Reason, now: float, error: Exception | None = None) -> Death:
        """The connection ended another way (EOF, reset, ...): record and return the death."""
        if self.death is None:
            source = Source.LOCAL if reason is Reason.LOCAL_CLOSE else Source.KERNEL
            self._die(reason, source, now, error)
        assert self.death is not None
        return self.death

    def poll(self, now: float) -> Decision:
        """What is due at ``now``; call it at :meth:`next_deadline` (earlier finds nothing).

        ``PING``: send a ping now (it is recorded as sent at ``now``); ``SUSPECT``: the
        peer has just become suspect; ``DEAD``: it has just been convicted
        (:attr:`death` says why). Flags combine; ``Decision.NONE`` when nothing is due.
        """
        if self.death is not None:
            return Decision.NONE
        decision = self._tracker.poll(now)
        if Decision.DEAD in decision:
            self._die(Reason.TIMEOUT, Source.HEARTBEAT, now, None)
            return Decision.DEAD
        if Decision.SUSPECT in decision:
            self._state = next_state(self._state, Trigger.SILENCE)
        if Decision.PING in decision:
            self.pings_sent += 1
        return decision

    # ------------------------------------------------------------------ queries (pure)

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has something to do; ``None`` once DEAD."""
        return None if self.death is not None else self._tracker.next_deadline()

    @property
    def state(self) -> State:
        """ALIVE, SUSPECT or DEAD."""
        return self._state

    @property
    def rtt(self) -> float | None:
        """Smoothed round-trip time in seconds (RFC 6298); ``None`` before the first pong."""
        return self._rtt.srtt

    @property
    def rtt_stats(self) -> RttEstimator:
        """Every RTT figure: last, smoothed, variance, min, max, recent percentiles."""
        return self._rtt

    @property
    def timeout(self) -> float:
        """The silence that convicts the peer now (an adaptive policy moves it)."""
        return self._tracker.timeout

    def silence(self, now: float) -> float:
        """Seconds since the last evidence of life."""
        return self._tracker.silence(now)

    # ------------------------------------------------------------------ internals

    def _evidence(self, now: float) -> bool:
        if self.death is not None:
            return False
        if self._tracker.evidence(now) and self._state is State.SUSPECT:
            self._state = next_state(self._state, Trigger.EVIDENCE)
            return True
        return False

    def _die(self, reason: Reason, source: Source, now: float, error: Exception | None) -> None:
        self._state = next_state(self._state, Trigger.DIE)
        self.death = Death(
            reason=reason,
            source=source,
            silence=self._tracker.silence(now),
            last_rtt=self._rtt.last,
            error=error,
        )
