from __future__ import annotations

import itertools
import math
import random

import pytest

import pulsewire.core.session as session_module
from pulsewire.core import (
    Adaptive,
    Died,
    Evidence,
    Policy,
    Reason,
    Recovered,
    Source,
    State,
    Suspected,
)
from pulsewire.core.codec import Frame
from pulsewire.core.frames import FEATURES, Feature, Ping, Pong
from pulsewire.core.liveness import Decision, LivenessTracker
from pulsewire.errors import PolicyError
from pulsewire.testing import SessionPair, WireMode, control_frame, data_frame, decode_control

from .helpers import connected, death_of, run_timers, sent_frames

POLICY = Policy(interval=1.0, timeout=5.0, suspect_after=3.0)
QUIET = Policy(interval=100.0, timeout=1000.0)  # a peer that never pings first


def tracker(policy: Policy = POLICY, seed: int = 0) -> LivenessTracker:
    return LivenessTracker(policy, now=0.0, rng=random.Random(seed))


# ---------------------------------------------------------------- the tracker alone


def test_tracker_first_deadline_is_the_first_ping() -> None:
    t = tracker()
    assert t.next_deadline() == t.next_ping_at() == t.ping_delay


def test_tracker_decides_nothing_before_the_ping_is_due() -> None:
    t = tracker()
    assert t.poll(t.ping_delay - 0.01) is Decision.NONE
    assert t.last_ping == 0.0


def test_tracker_ping_records_the_ping_and_draws_a_new_delay() -> None:
    t = tracker()
    at = t.ping_delay
    assert t.poll(at) is Decision.PING
    assert t.last_ping == at
    assert t.next_ping_at() == at + t.ping_delay


def test_tracker_traffic_both_ways_postpones_the_ping() -> None:
    t = tracker()
    t.evidence(0.5)
    t.sent(0.5)
    assert t.poll(t.ping_delay) is Decision.NONE
    assert t.next_ping_at() == 0.5 + t.ping_delay


def test_tracker_pings_when_it_has_sent_nothing_for_an_interval() -> None:
    # A receiver of a one-way stream: evidence keeps coming, but the peer hears nothing.
    t = tracker()
    for step in range(1, 20):
        t.evidence(step * 0.1)
    assert t.next_ping_at() == t.ping_delay
    assert Decision.PING in t.poll(t.ping_delay)


def test_tracker_evidence_never_moves_backwards() -> None:
    t = tracker()
    t.evidence(2.0)
    t.evidence(1.0)
    assert t.last_evidence == 2.0


def test_jitter_shortens_each_ping_by_at_most_a_quarter_of_the_interval() -> None:
    t = tracker(Policy(interval=2.0, timeout=1000.0), seed=1234)
    delays = []
    now = 0.0
    for _ in range(5000):
        now = t.next_ping_at()
        assert t.poll(now) is Decision.PING
        t.evidence(now)  # the PONG comes back at once, keeping the peer alive
        delays.append(t.ping_delay)
    assert all(1.5 <= d <= 2.0 for d in delays)
    assert min(delays) < 1.51
    assert max(delays) > 1.99


def test_zero_jitter_pings_exactly_every_interval() -> None:
    t = tracker(Policy(interval=2.0, timeout=10.0, jitter=0.0))
    assert t.ping_delay == 2.0
    t.poll(2.0)
    assert t.ping_delay == 2.0


def test_tracker_suspects_once_then_convicts() -> None:
    t = tracker(Policy(interval=10.0, timeout=50.0, suspect_after=3.0))
    assert t.poll(3.0) is Decision.SUSPECT
    assert t.poll(3.5) is Decision.NONE
    assert t.poll(50.0) is Decision.DEAD


def test_tracker_evidence_ends_suspicion_once() -> None:
    t = tracker()
    t.poll(3.0)
    assert t.evidence(3.2) is True
    assert t.evidence(3.3) is False


def test_tracker_convicts_exactly_at_the_timeout_not_before() -> None:
    t = tracker(Policy(interval=10.0, timeout=50.0, suspect_after=3.0))
    assert t.poll(math.nextafter(50.0, 0.0)) is not Decision.DEAD
    assert t.poll(50.0) is Decision.DEAD


def test_early_timer_does_nothing() -> None:
    session = connected(POLICY)
    deadline = session.next_deadline()
    assert deadline is not None
    session.handle_timer(deadline - 0.1)
    assert session.data_to_send() == b""
    assert session.events_received() == []
    assert session.next_deadline() == deadline


# ---------------------------------------------------------------- idle pings and suppression


def ping_times(pair: SessionPair, until: float) -> list[float]:
    times = []
    sent = 0
    while pair.now < until and pair.step_to_deadline() is not None:
        count = pair.client.stats(pair.now).pings_sent
        if count > sent:
            times.append(pair.now)
            sent = count
    return times


def test_idle_connection_pings_every_interval_less_jitter() -> None:
    pair = SessionPair(POLICY, QUIET, seed=7)
    times = ping_times(pair, until=200.0)
    gaps = [b - a for a, b in itertools.pairwise([0.0, *times])]
    assert len(gaps) > 200
    assert all(0.75 - 1e-9 <= gap <= 1.0 + 1e-9 for gap in gaps)
    assert min(gaps) < 0.8
    assert max(gaps) > 0.95
    assert pair.client.state is State.ALIVE


def test_busy_connection_sends_no_pings() -> None:
    pair = SessionPair(POLICY, POLICY)
    for _ in range(100):
        pair.advance(0.7)  # just under the shortest jittered interval (0.75 s)
        pair.client.send_message(b"tick")
        pair.server.send_message(b"tock")
        pair.exchange()
    for session in (pair.client, pair.server):
        stats = session.stats(pair.now)
        assert (stats.pings_sent, stats.messages_received) == (0, 100)


def test_a_one_way_stream_costs_one_ping_exchange_per_interval_in_total() -> None:
    # The receiver sends nothing else, so its silence towards the sender must be broken:
    # the sender (the leader) hears nothing and pings; the PONG it gets is the receiver's
    # evidence of being heard, so the receiver never needs a PING of its own.
    pair = SessionPair(POLICY, POLICY)
    for _ in range(100):
        pair.advance(0.7)
        pair.client.send_message(b"tick")
        pair.exchange()
    client = pair.client.stats(pair.now).pings_sent
    server = pair.server.stats(pair.now).pings_sent
    assert server == 0
    assert 70 / POLICY.interval <= client <= 70 / (POLICY.interval * (1 - POLICY.jitter))
    assert pair.client.state is State.ALIVE
    assert pair.server.state is State.ALIVE


# ---------------------------------------------------------------- suspect, recover, die


def blackholed() -> SessionPair:
    pair = SessionPair(POLICY, POLICY)
    pair.to_client.mode = WireMode.DROP
    return pair


def test_silent_peer_becomes_suspect_exactly_at_suspect_after() -> None:
    pair = blackholed()
    pair.advance(2.999)
    assert pair.client.state is State.ALIVE
    while not any(isinstance(e, Suspected) for e in pair.client_events):
        pair.step_to_deadline()
    assert pair.now == 3.0
    assert pair.client.state is State.SUSPECT
    assert Suspected(3.0) in pair.client_events


def test_suspect_peer_recovers_on_evidence() -> None:
    pair = blackholed()
    pair.advance(3.5)
    pair.to_client.mode = WireMode.DELIVER
    pair.server.send_message(b"still here")
    pair.exchange()
    assert pair.client.state is State.ALIVE
    assert Recovered(3.5) in pair.client_events


def test_recovered_peer_can_be_suspected_again() -> None:
    pair = blackholed()
    pair.advance(3.5)
    pair.to_client.mode = WireMode.DELIVER
    pair.server.send_message(b"x")
    pair.exchange()
    pair.to_client.mode = WireMode.DROP
    pair.advance(3.0)
    assert pair.client.state is State.SUSPECT
    assert sum(isinstance(e, Suspected) for e in pair.client_events) == 2


def test_silent_peer_is_dead_exactly_at_timeout_not_before() -> None:
    pair = blackholed()
    pair.advance(5.0 - 1e-3)
    assert pair.client.state is State.SUSPECT
    pair.step_to_deadline()
    assert pair.now == 5.0
    death = death_of(pair.client)
    assert (death.reason, death.source, death.silence) == (Reason.TIMEOUT, Source.HEARTBEAT, 5.0)
    assert Died(death, abort=True) in pair.client_events


def test_timeout_counts_from_the_last_evidence() -> None:
    pair = SessionPair(POLICY, POLICY)
    pair.advance(2.0)
    pair.server.send_message(b"last words")
    pair.exchange()
    pair.to_client.mode = WireMode.DROP
    pair.advance(4.999)
    assert pair.client.death is None
    pair.advance(0.001)
    assert death_of(pair.client).reason is Reason.TIMEOUT
    assert death_of(pair.client).silence == pytest.approx(5.0)


def test_deadline_never_lies_beyond_the_conviction() -> None:
    pair = blackholed()
    while pair.client.death is None:
        deadline = pair.client.next_deadline()
        assert deadline is not None
        assert deadline <= 5.0
        pair.step_to_deadline()
    assert pair.now == 5.0
    assert pair.client.next_deadline() is None


def test_late_timer_still_convicts_with_the_real_silence() -> None:
    pair = blackholed()
    pair.jump(7.25)  # the local loop was blocked past every deadline
    pair.fire_timers()
    death = death_of(pair.client)
    assert (death.reason, death.silence) == (Reason.TIMEOUT, 7.25)
    assert not any(isinstance(e, Suspected) for e in pair.client_events)


def test_frozen_peer_is_convicted_and_later_sees_a_reset() -> None:
    pair = SessionPair(POLICY, POLICY)
    pair.freeze("server")
    pair.advance(5.0)
    assert death_of(pair.client).reason is Reason.TIMEOUT
    assert pair.server.death is None
    pair.thaw("server")
    pair.exchange()
    assert death_of(pair.server).reason is Reason.RESET
    held_pings = pair.client.stats(pair.now).pings_sent
    assert held_pings >= 4
    assert pair.server.stats(pair.now).pings_received == held_pings


def test_death_carries_the_last_rtt() -> None:
    pair = SessionPair(POLICY, QUIET)
    pair.to_client.mode = WireMode.HOLD
    pair.step_to_deadline()  # the client pings; the PONG waits in the wire
    pair.jump(0.125)
    pair.to_client.mode = WireMode.DELIVER
    pair.exchange()
    pair.to_client.mode = WireMode.DROP
    pair.advance(10.0)
    assert death_of(pair.client).last_rtt == pytest.approx(0.125)


# ---------------------------------------------------------------- RTT


def answer_ping(frame: Frame) -> bytes:
    ping = decode_control(frame)
    assert isinstance(ping, Ping)
    return control_frame(Pong(ping.seq, ping.sent_at))


def test_rtt_is_measured_on_the_senders_clock() -> None:
    session = connected(POLICY, now=100.0)
    at = run_timers(session, until=101.0)
    (ping,) = sent_frames(session)
    session.receive_data(answer_ping(ping), at + 0.25)
    assert session.rtt.last == pytest.approx(0.25)
    assert session.stats(at + 0.25).pongs_received == 1


def test_rtt_through_a_pair_equals_the_delay_of_the_pong() -> None:
    pair = SessionPair(POLICY, QUIET)
    pair.to_client.mode = WireMode.HOLD
    pair.step_to_deadline()
    pair.jump(0.4)
    pair.to_client.mode = WireMode.DELIVER
    pair.exchange()
    assert pair.client.stats(pair.now).rtt_last == pytest.approx(0.4)


def test_session_smooths_rtt_as_rfc_6298() -> None:
    session = connected(POLICY, initiator=False)  # no handshake sample: the PONGs alone
    now = 0.0
    for delay in (0.2, 0.6):
        now = session.next_deadline() or 0.0
        session.handle_timer(now)
        (ping,) = sent_frames(session)
        now += delay
        session.receive_data(answer_ping(ping), now)
    stats = session.stats(now)
    assert stats.rtt_smoothed == pytest.approx(0.25)
    assert stats.rtt_variance == pytest.approx(0.175)
    assert (stats.rtt_min, stats.rtt_max) == (pytest.approx(0.2), pytest.approx(0.6))


@pytest.mark.parametrize(
    ("seq", "sent_at", "now"),
    [
        (2, 0.5, 1.0),  # only seq 1 was sent
        (0, 0.5, 1.0),  # sequence numbers start at 1
        (1, 2.0, 1.0),  # stamped in the future
        (1, -1.0, 1.0),  # stamped before the session existed
        (1, float("nan"), 1.0),
    ],
)
def test_bogus_pong_is_a_protocol_error(seq: int, sent_at: float, now: float) -> None:
    session = connected(Policy(interval=0.5, timeout=5.0, jitter=0.0), initiator=False)
    session.handle_timer(0.5)  # the responder's first ping is due at its interval
    session.data_to_send()
    session.receive_data(control_frame(Pong(seq, sent_at)), now)
    death = death_of(session)
    assert death.reason is Reason.PROTOCOL_ERROR
    assert session.rtt.count == 0


def test_pong_before_any_ping_is_a_protocol_error() -> None:
    session = connected(POLICY)
    session.receive_data(control_frame(Pong(0, 0.0)), 0.5)
    assert death_of(session).reason is Reason.PROTOCOL_ERROR


# ---------------------------------------------------------------- strict evidence


STRICT = Policy(interval=1.0, timeout=5.0, suspect_after=3.0, evidence=Evidence.PONG)


def test_data_alone_keeps_a_default_session_alive() -> None:
    session = connected(POLICY)
    now = 0.0
    for _ in range(40):
        now += 0.5
        run_timers(session, until=now)
        session.receive_data(data_frame(b"data"), now)
    assert session.state is State.ALIVE
    # It pings only so that the peer, which hears nothing else from it, has evidence.
    assert session.stats(now).pings_sent <= 20 / (POLICY.interval * 0.75)


def test_data_alone_does_not_keep_a_strict_session_alive() -> None:
    session = connected(STRICT)
    now = 0.0
    while session.death is None:
        now += 0.5
        run_timers(session, until=now)
        session.receive_data(data_frame(b"data"), now)
    assert now == 5.0
    assert death_of(session).reason is Reason.TIMEOUT
    assert session.stats(now).pings_sent >= 4


def test_pongs_keep_a_strict_session_alive() -> None:
    session = connected(STRICT)
    now = 0.0
    while now < 30.0:
        now = session.next_deadline() or 0.0
        session.handle_timer(now)
        for frame in sent_frames(session):
            session.receive_data(answer_ping(frame), now + 0.01)
    assert session.state is State.ALIVE
    assert session.stats(now).pongs_received > 25


def test_strict_session_pings_even_while_data_flows() -> None:
    pair = SessionPair(STRICT, POLICY)
    for _ in range(20):
        pair.advance(0.5)
        pair.server.send_message(b"x")
        pair.exchange()
    assert pair.client.stats(pair.now).pings_sent >= 9
    assert pair.client.state is State.ALIVE


def test_the_initiator_leads_an_idle_connection_and_the_responder_only_answers() -> None:
    # One exchange per interval gives both sides evidence; the leader's delays are drawn
    # from [1 - jitter, 1] * interval and the follower's from [1, 1 + jitter] * interval,
    # so the follower's timer never wins while the leader is well.
    pair = SessionPair(POLICY, POLICY, seed=14)
    pair.advance(120.0)
    client = pair.client.stats(pair.now).pings_sent
    server = pair.server.stats(pair.now).pings_sent
    assert server == 0
    assert 120 / POLICY.interval <= client <= 120 / (POLICY.interval * (1 - POLICY.jitter))
    assert pair.server.stats(pair.now).pings_received == client


def test_the_follower_pings_when_the_leaders_pings_stop_arriving() -> None:
    pair = SessionPair(POLICY, POLICY, seed=3)
    pair.advance(10.0)
    pair.to_server.mode = WireMode.DROP  # the client's pings are lost from now on
    start = pair.now
    while pair.server.stats(pair.now).pings_sent == 0:
        pair.step_to_deadline()
    quiet = pair.now - start
    assert quiet <= POLICY.interval * (1 + POLICY.jitter)


def test_with_an_adaptive_policy_and_echo_the_initiator_leads_and_both_sides_learn() -> None:
    # Each side learns from every exchange, the leader from the answers to its pings, the
    # follower from the echoes of its PONGs, so the follower need not ping: it only
    # answers, the cheaper half of an exchange.
    adaptive = Policy(interval=1.0, timeout=5.0, adaptive=Adaptive(min_timeout=2.0))
    pair = SessionPair(adaptive, adaptive, seed=14)
    pair.advance(120.0)
    assert pair.client.stats(pair.now).pings_sent > 120 / 0.95
    assert pair.server.stats(pair.now).pings_sent == 0
    for session in (pair.client, pair.server):
        assert session.tracker is not None
        assert session.tracker.responses is not None
        assert len(session.tracker.responses) == adaptive.adaptive.window  # type: ignore[union-attr]


def test_with_an_adaptive_policy_and_no_echo_both_sides_take_turns_pinging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A peer that does not echo our PONGs (a build without Feature.ECHO): a side learns
    # only by timing answers to pings of its own, so both sides ping, in turns; each
    # redraws its delay when the peer pings, so neither is stuck with the longer delay.
    monkeypatch.setattr(session_module, "FEATURES", FEATURES & ~Feature.ECHO)
    adaptive = Policy(interval=1.0, timeout=5.0, adaptive=Adaptive(min_timeout=2.0))
    pair = SessionPair(adaptive, adaptive, seed=14)
    pair.advance(120.0)
    client = pair.client.stats(pair.now).pings_sent
    server = pair.server.stats(pair.now).pings_sent
    assert min(client, server) > 0.25 * (client + server)


def test_the_default_suspicion_follows_the_negotiated_interval() -> None:
    slow_peer = Policy(interval=4.0, timeout=5.0, min_peer_interval=4.0)
    pair = SessionPair(Policy(interval=1.0, timeout=5.0), slow_peer)
    pair.advance(60.0)
    assert not any(isinstance(event, Suspected) for event in pair.client_events)


@pytest.mark.parametrize("interval", [0.0, -1.0, 5.0, 6.0])
def test_tracker_refuses_an_interval_that_cannot_detect_within_the_timeout(
    interval: float,
) -> None:
    with pytest.raises(PolicyError, match=r"interval .* must be positive and shorter"):
        LivenessTracker(POLICY, now=0.0, interval=interval)
