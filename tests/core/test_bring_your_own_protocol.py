"""``Heartbeat``: the liveness engine alone, for protocols with their own framing (fake clock)."""

from __future__ import annotations

import itertools
import random

import pytest

from pulsewire import Adaptive, Decision, Evidence, Heartbeat, Policy, Reason, Source, State
from pulsewire.errors import UsageError

POLICY = Policy(interval=1.0, timeout=3.0)


def beat(seed: int = 0, policy: Policy = POLICY, *, leads: bool = True) -> Heartbeat:
    return Heartbeat(policy, now=0.0, leads=leads, rng=random.Random(seed))


def step(heartbeat: Heartbeat) -> tuple[float, Decision]:
    """Jump to the next deadline and poll there (the aioquic way: no time in between)."""
    deadline = heartbeat.next_deadline()
    assert deadline is not None
    return deadline, heartbeat.poll(deadline)


def test_an_answered_idle_connection_pings_each_interval_and_never_suspects() -> None:
    heartbeat = beat()
    pinged_at = []
    for _ in range(100):
        now, decision = step(heartbeat)
        assert decision == Decision.PING
        pinged_at.append(now)
        heartbeat.sent(now)
        heartbeat.pong(sent_at=now, now=now + 0.01)
    gaps = [b - a for a, b in itertools.pairwise(pinged_at)]
    # The leader pings 75-100 % of the interval after its last ping (its last output).
    assert all(0.75 - 1e-9 <= gap <= 1.0 + 1e-9 for gap in gaps)
    assert max(gaps) - min(gaps) > 0.1  # jittered, not in lockstep
    assert heartbeat.state is State.ALIVE
    assert heartbeat.pings_sent == 100
    assert heartbeat.rtt == pytest.approx(0.01)
    assert heartbeat.rtt_stats.count == 100


def test_silence_makes_the_peer_suspect_then_dead_at_exactly_the_timeout() -> None:
    heartbeat = beat()
    heartbeat.heard_from(5.0)
    decisions = []
    while heartbeat.death is None:
        now, decision = step(heartbeat)
        decisions.append((now - 5.0, decision))
    suspect = [at for at, decision in decisions if Decision.SUSPECT in decision]
    assert suspect == [pytest.approx(2.0)]  # halfway from the interval to the timeout
    assert decisions[-1] == (pytest.approx(3.0), Decision.DEAD)
    death = heartbeat.death
    assert (death.reason, death.source) == (Reason.TIMEOUT, Source.HEARTBEAT)
    assert death.silence == pytest.approx(3.0)
    assert heartbeat.state is State.DEAD
    assert heartbeat.next_deadline() is None
    assert heartbeat.poll(100.0) == Decision.NONE


def test_evidence_ends_a_suspicion() -> None:
    heartbeat = beat()
    while heartbeat.state is State.ALIVE:
        now, _ = step(heartbeat)
    assert heartbeat.state is State.SUSPECT
    assert heartbeat.heard_from(now + 0.1) is True
    assert heartbeat.state is State.ALIVE
    assert heartbeat.heard_from(now + 0.2) is False  # nothing to end any more


def test_a_busy_connection_never_pings() -> None:
    heartbeat = beat()
    now = 0.0
    while now < 60.0:
        now += 0.1
        heartbeat.heard_from(now)
        heartbeat.sent(now)
        deadline = heartbeat.next_deadline()
        assert deadline is not None
        assert deadline > now
    assert heartbeat.pings_sent == 0


def test_a_peer_that_only_sends_still_gets_pinged_by_its_silent_receiver() -> None:
    # We receive all the time but send nothing: the peer needs our evidence, so we ping.
    heartbeat = beat()
    now, pings = 0.0, 0
    while now < 10.0:
        now = round(now + 0.1, 10)
        heartbeat.heard_from(now)
        if Decision.PING in heartbeat.poll(now):
            pings += 1
    assert 9 <= pings <= 14


def test_strict_mode_counts_only_pongs() -> None:
    heartbeat = beat(policy=Policy(interval=1.0, timeout=3.0, evidence=Evidence.PONG))
    now = 0.0
    while heartbeat.death is None:
        now += 0.1
        heartbeat.heard_from(now)  # chatter proves the kernel delivers, not that the peer runs
        heartbeat.poll(now)
    assert heartbeat.death.reason is Reason.TIMEOUT
    assert now == pytest.approx(3.0, abs=0.11)

    answered = beat(policy=Policy(interval=1.0, timeout=3.0, evidence=Evidence.PONG))
    for _ in range(20):
        at, decision = step(answered)
        if Decision.PING in decision:
            answered.pong(sent_at=at, now=at + 0.05)
    assert answered.death is None


def test_the_follower_waits_for_the_leader() -> None:
    leader, follower = beat(1), beat(2, leads=False)
    assert leader.next_deadline() < 1.0 + 1e-9 < follower.next_deadline()


def test_an_adaptive_policy_learns_a_shorter_timeout() -> None:
    policy = Policy(interval=1.0, timeout=10.0, adaptive=Adaptive(min_timeout=2.0))
    heartbeat = beat(policy=policy)
    assert heartbeat.timeout == 10.0
    for _ in range(60):
        at, decision = step(heartbeat)
        if Decision.PING in decision:
            heartbeat.sent(at)
            heartbeat.pong(sent_at=at, now=at + 0.02)
    assert 2.0 <= heartbeat.timeout < 10.0
    assert heartbeat.death is None


def test_a_lost_connection_keeps_its_reason() -> None:
    heartbeat = beat()
    heartbeat.pong(sent_at=0.5, now=0.6)
    death = heartbeat.lost(Reason.EOF, 1.5)
    assert (death.reason, death.source) == (Reason.EOF, Source.KERNEL)
    assert death.silence == pytest.approx(0.9)
    assert death.last_rtt == pytest.approx(0.1)
    assert heartbeat.lost(Reason.RESET, 2.0) is death  # the first verdict stands
    assert heartbeat.poll(10.0) == Decision.NONE
    assert heartbeat.heard_from(10.0) is False


def test_a_pong_from_the_future_is_the_callers_mistake() -> None:
    with pytest.raises(UsageError, match="later than now"):
        beat().pong(sent_at=2.0, now=1.0)
