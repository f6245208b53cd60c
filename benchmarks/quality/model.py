"""The simulation behind ``detection_quality.py``: a TCP-like network and a pair of sessions.

- :class:`Link` is a path profile: base round trip, per-direction jitter, per-direction loss
  (steady, or changing between a clean and a degraded phase on a fixed cycle), and the
  retransmission timeout Linux would settle on for it.
- :class:`Direction` is one direction of a TCP connection: each segment is lost with the
  link's probability per transmission and retransmitted after an RTO that doubles, and it
  is delivered in order, never before the segments written ahead of it (head-of-line
  blocking).
- :class:`PairSim` joins two real :class:`pulsewire.core.Session` objects through two
  directions on a float clock that jumps from event to event, and can crash one side.
- :func:`simulate` is one cell of the study: a long run of live pairs (a false DEAD ends
  the pair; a fresh one takes its place) with crash trials forked off it.

What the model includes and leaves out is stated in ``detection_quality.py``'s docstring.
"""

from __future__ import annotations

import copy
import math
import random
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pulsewire.core.events import Died, Recovered, Suspected
from pulsewire.core.policy import Policy
from pulsewire.core.session import Session

__all__ = ["Crash", "Link", "Outcome", "PairSim", "simulate"]

RTO_MIN = 0.2  #: Linux ``TCP_RTO_MIN``: the floor on the variance term of the RTO
RTO_MAX = 120.0  #: Linux ``TCP_RTO_MAX``
ONSET = 120.0  #: false deaths this soon after a path degraded are counted apart
SIDES = ("client", "server")


@dataclass(frozen=True, slots=True)
class Link:
    """A path profile, the same in both directions.

    A *changing* path (``degraded_loss`` set) has loss ``loss`` for ``period - degraded_for``
    seconds, then ``degraded_loss`` for ``degraded_for`` seconds, over and over from time 0;
    delay and RTO do not change (a lossy radio hop, a congested peering link).
    """

    name: str
    rtt: float  #: base round trip, seconds
    jitter: float = 0.0  #: each segment's one-way delay adds U(0, jitter) seconds
    loss: float = 0.0  #: probability that one transmission of a segment is lost
    degraded_loss: float | None = None  #: loss in the degraded phase; None: never degraded
    period: float = 3600.0  #: a changing path's cycle: clean, then degraded
    degraded_for: float = 0.0  #: seconds at the end of each cycle with ``degraded_loss``

    def degraded(self, now: float) -> bool:
        """Whether a changing path is in its degraded phase at ``now``."""
        return self.degraded_loss is not None and now % self.period >= (
            self.period - self.degraded_for
        )

    def degraded_since(self, now: float) -> float:
        """Seconds since the degraded phase under way at ``now`` began."""
        return now % self.period - (self.period - self.degraded_for)

    def phase(self, now: float) -> str:
        """``"clean"`` or ``"degraded"`` for a changing path; ``""`` for a steady one."""
        if self.degraded_loss is None:
            return ""
        return "degraded" if self.degraded(now) else "clean"

    def loss_at(self, now: float) -> float:
        """The loss of one transmission sent at ``now``."""
        if self.degraded_loss is not None and self.degraded(now):
            return self.degraded_loss
        return self.loss

    @property
    def rto(self) -> float:
        """The RTO Linux converges to on this path: ``srtt + max(4 * mdev, 200 ms)``.

        A round trip is ``rtt`` plus two independent U(0, jitter) delays: its mean is
        ``rtt + jitter`` and its mean deviation ``jitter / 3``.
        """
        return self.rtt + self.jitter + max(4 * self.jitter / 3, RTO_MIN)

    @property
    def max_one_way(self) -> float:
        return self.rtt / 2 + self.jitter

    def one_way(self, rng: random.Random) -> float:
        """The propagation and queueing delay of one transmission."""
        return self.rtt / 2 + (rng.random() * self.jitter if self.jitter else 0.0)


class Direction:
    """One direction of a TCP connection: retransmission after loss, in-order delivery.

    Segments are queued as ``(delivered_at, transmitted_at, data)``: ``transmitted_at`` is
    the time of the transmission that got through. Delivery times never decrease along the
    queue (a segment waits for the ones ahead of it), so the queue is a plain FIFO.
    """

    __slots__ = ("_link", "_queue", "_rng", "_tail", "open")

    def __init__(self, link: Link, rng: random.Random) -> None:
        self._link = link
        self._rng = rng
        self._queue: deque[tuple[float, float, bytes]] = deque()
        self._tail = -math.inf  #: delivery time of the last segment queued
        self.open = True  #: false once the sender crashed or the receiver is gone

    def send(self, data: bytes, now: float) -> None:
        """The sender's kernel puts ``data`` on the wire at ``now`` as one segment."""
        if not self.open:
            return
        link, rng = self._link, self._rng
        transmitted, rto = now, link.rto
        while (loss := link.loss_at(transmitted)) and rng.random() < loss:
            transmitted += rto
            rto = min(2 * rto, RTO_MAX)
        self._tail = max(self._tail, transmitted + link.one_way(rng))
        self._queue.append((self._tail, transmitted, data))

    def next_delivery(self) -> float:
        return self._queue[0][0] if self._queue else math.inf

    def take_due(self, now: float) -> Iterator[bytes]:
        """The segments delivered to the receiving application by ``now``, in order."""
        queue = self._queue
        while queue and queue[0][0] <= now:
            yield queue.popleft()[2]

    def sender_crashed(self, at: float) -> None:
        """The sender's host stopped at ``at``: what it already got across still arrives.

        A segment whose successful transmission would have come later (a retransmission
        after ``at``) never arrives, and nothing behind it can be delivered either.
        """
        kept: deque[tuple[float, float, bytes]] = deque()
        for segment in self._queue:
            if segment[1] > at:
                break
            kept.append(segment)
        self._queue = kept
        self.open = False

    def receiver_crashed(self) -> None:
        """The receiving host is gone: whatever is sent to it is lost."""
        self._queue.clear()
        self.open = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """The first death in a pair: which side, when, and why."""

    side: int
    at: float
    reason: str


class PairSim:
    """Two sessions with the same policy, joined by two :class:`Direction`\\ s.

    Time moves only through :meth:`run_until`, which jumps from one event (a delivery or a
    session deadline) to the next; at one instant, deliveries are handled before timers (as
    an event loop runs I/O callbacks before timers), then each side's output is sent as one
    segment. Suspicion time is accumulated per side for the query accuracy figure.
    """

    def __init__(self, policy: Policy, link: Link, rng: random.Random, now: float) -> None:
        self.now = self.started = now
        self.link = link
        self.rng = rng
        self.sessions = [
            Session(
                policy,
                now=now,
                name=name,
                rng=random.Random(rng.getrandbits(64)),
                initiator=name == "client",
            )
            for name in SIDES
        ]
        self.outgoing = [Direction(link, rng), Direction(link, rng)]  #: from side i
        self.up = [True, True]
        self.suspect_since: list[float | None] = [None, None]
        self.suspect_seconds = 0.0
        self.verdict: Verdict | None = None
        for side in (0, 1):
            self._flush(side)

    def next_event(self) -> float:
        when = math.inf
        for side in (0, 1):
            if not self.up[side]:
                continue
            deadline = self.sessions[side].next_deadline()
            if deadline is not None and deadline < when:
                when = deadline
            when = min(when, self.outgoing[1 - side].next_delivery())
        return when

    def run_until(self, end: float) -> bool:
        """Process every event up to ``end``; stop early at the first death (return True)."""
        while self.verdict is None:
            when = self.next_event()
            if when > end:
                self.now = max(self.now, end)
                return False
            self._step(max(when, self.now))
        return True

    def _step(self, now: float) -> None:
        self.now = now
        for side in (0, 1):
            if self.up[side]:
                session = self.sessions[side]
                for data in self.outgoing[1 - side].take_due(now):
                    session.receive_data(data, now)
        for side in (0, 1):
            session = self.sessions[side]
            deadline = session.next_deadline()
            if self.up[side] and deadline is not None and deadline <= now:
                session.handle_timer(now)
                after = session.next_deadline()
                if after is not None and after <= now:
                    raise RuntimeError(f"{SIDES[side]} deadline stuck at {after} (now {now})")
        for side in (0, 1):
            if self.up[side]:
                self._flush(side)

    def _flush(self, side: int) -> None:
        session = self.sessions[side]
        data = session.data_to_send(now=self.now)
        if data:
            self.outgoing[side].send(bytes(data), self.now)
        for event in session.events_received():
            if isinstance(event, Suspected):
                self.suspect_since[side] = self.now
            elif isinstance(event, Recovered):
                self._end_suspicion(side)
            elif isinstance(event, Died) and self.verdict is None:
                self._end_suspicion(side)
                self.verdict = Verdict(side, self.now, event.death.reason.value)

    def _end_suspicion(self, side: int) -> None:
        since = self.suspect_since[side]
        if since is not None:
            self.suspect_seconds += self.now - since
            self.suspect_since[side] = None

    def close_books(self) -> float:
        """End the open suspicions at ``now``; return the pair's suspicion side-seconds."""
        for side in (0, 1):
            self._end_suspicion(side)
        return self.suspect_seconds

    def crash(self, side: int) -> None:
        """Crash ``side``'s host at ``now``: it stops sending, answering and retransmitting."""
        self.up[side] = False
        self.outgoing[side].sender_crashed(self.now)
        self.outgoing[1 - side].receiver_crashed()


@dataclass(frozen=True, slots=True)
class Crash:
    """One crash trial: how long the survivor took to convict, and with which reason."""

    detection_time: float  #: ``math.inf`` when the survivor never convicted
    reason: str
    survivor_timeout: float  #: the survivor's timeout in force at the crash
    phase: str = ""  #: a changing path's phase at the crash (see :meth:`Link.phase`)


@dataclass(slots=True)
class Outcome:
    """What one (policy, link) cell measured."""

    seconds: float = 0.0  #: simulated time of live pairs (connection-seconds)
    false_deaths: int = 0
    false_reasons: Counter[str] = field(default_factory=Counter)
    steady_seconds: float = 0.0  #: connection-seconds at pair age >= warmup
    steady_false_deaths: int = 0  #: false deaths at pair age >= warmup
    suspect_seconds: float = 0.0  #: summed over both sides
    crashes: list[Crash] = field(default_factory=list)
    #: false deaths by path phase: "clean", "degraded", and "onset" for those of the
    #: degraded ones that came in the first ``ONSET`` seconds of their phase
    phases: Counter[str] = field(default_factory=Counter)

    @classmethod
    def merge(cls, outcomes: Iterable[Outcome]) -> Outcome:
        """The outcome of connections that ran all of ``outcomes`` side by side."""
        merged = cls()
        for outcome in outcomes:
            merged.seconds += outcome.seconds
            merged.false_deaths += outcome.false_deaths
            merged.false_reasons += outcome.false_reasons
            merged.steady_seconds += outcome.steady_seconds
            merged.steady_false_deaths += outcome.steady_false_deaths
            merged.suspect_seconds += outcome.suspect_seconds
            merged.crashes += outcome.crashes
            merged.phases += outcome.phases
        return merged

    @property
    def accuracy(self) -> float:
        """Query accuracy: the fraction of side-time a live peer was not SUSPECT."""
        return 1.0 - self.suspect_seconds / (2 * self.seconds) if self.seconds else math.nan


def crash_trial(pair: PairSim, seed: int, limit: float) -> Crash:
    """Fork ``pair``, crash one side at its ``now``, run until the survivor convicts."""
    trial = copy.deepcopy(pair)
    trial.rng.seed(seed)
    crashed = trial.rng.randrange(2)
    at = trial.now
    timeout = trial.sessions[1 - crashed].stats(at).timeout
    phase = trial.link.phase(at)
    trial.crash(crashed)
    if not trial.run_until(at + limit):
        return Crash(math.inf, "undetected", timeout, phase)
    assert trial.verdict is not None
    assert trial.verdict.side != crashed
    return Crash(trial.verdict.at - at, trial.verdict.reason, timeout, phase)


def simulate(
    policy: Policy,
    link: Link,
    rng: random.Random,
    *,
    seconds: float,
    crashes: int,
    warmup: float,
    max_seconds: float,
) -> Outcome:
    """A live run of at least ``seconds`` with ``crashes`` crash trials forked off it.

    A false death ends the pair; it is counted (as a steady-state one too when the pair
    was at least ``warmup`` old) and a fresh pair starts at once. A crash
    trial forks the live pair at a random instant at least ``warmup`` after the pair
    started, so the adaptive estimator has learnt the link; the live run itself goes on
    unharmed. The run is extended until every crash trial is done, but never beyond
    ``max_seconds`` (a policy that kills most pairs before ``warmup`` gets fewer trials).
    """
    outcome = Outcome()
    mean_gap = seconds / max(crashes, 1)
    limit = policy.timeout + 60.0  # far beyond any verdict: the ceiling plus a minute
    pair = PairSim(policy, link, rng, 0.0)
    next_crash = rng.uniform(0.5, 1.5) * mean_gap
    while True:
        wanted = len(outcome.crashes) < crashes
        if (pair.now >= seconds and not wanted) or pair.now >= max_seconds:
            break
        target = min(
            next_crash if wanted else math.inf,
            seconds if pair.now < seconds else math.inf,
            max_seconds,
        )
        if pair.run_until(target):
            _account(outcome, pair, warmup)
            pair = PairSim(policy, link, rng, pair.now)
            continue
        if wanted and pair.now >= next_crash:
            if pair.now - pair.started >= warmup:
                outcome.crashes.append(crash_trial(pair, rng.getrandbits(64), limit))
                next_crash = pair.now + rng.uniform(0.5, 1.5) * mean_gap
            else:
                next_crash = pair.started + warmup + rng.uniform(0.0, 0.5) * mean_gap
    _account(outcome, pair, warmup)
    outcome.seconds = pair.now
    return outcome


def _account(outcome: Outcome, pair: PairSim, warmup: float) -> None:
    """Add a pair that died (or that the run ended) to ``outcome``."""
    age = pair.now - pair.started
    outcome.steady_seconds += max(0.0, age - warmup)
    outcome.suspect_seconds += pair.close_books()
    if pair.verdict is None:
        return
    outcome.false_deaths += 1
    outcome.false_reasons[pair.verdict.reason] += 1
    phase = pair.link.phase(pair.verdict.at)
    outcome.phases[phase] += 1
    if phase == "degraded" and pair.link.degraded_since(pair.verdict.at) < ONSET:
        outcome.phases["onset"] += 1
    if age >= warmup:
        outcome.steady_false_deaths += 1
