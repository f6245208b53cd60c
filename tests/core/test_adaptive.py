"""The adaptive policy: the timeout follows observed response delays, within floor and ceiling.

Every test drives a real :class:`LivenessTracker` on a float clock: each silence ends
``delay`` after the PING it provoked, as a peer that answers would make it end.
"""

from __future__ import annotations

import random

import msgspec
import pytest

from pulsewire.core.estimators import ResponseEstimator, phi_to_z
from pulsewire.core.liveness import Decision, LivenessTracker
from pulsewire.core.policy import Adaptive, Policy
from pulsewire.errors import PolicyError
from pulsewire.testing.pair import SessionPair, Side

ADAPTIVE = Policy(
    interval=1.0, timeout=10.0, jitter=0.0, adaptive=Adaptive(min_timeout=1.25, warmup=5)
)
NORMAL_ONLY = Policy(
    interval=1.0,
    timeout=10.0,
    jitter=0.0,
    adaptive=Adaptive(min_timeout=1.25, warmup=5, tail_threshold=None),
)
Z8 = phi_to_z(8.0)
LAN = 0.001  #: an on-time answer on a LAN
WAN = 0.100  #: an on-time answer across a WAN
RTO = WAN + 0.2  #: the kernel's RTO on that WAN: srtt + 200 ms


def tracker(policy: Policy = ADAPTIVE) -> LivenessTracker:
    return LivenessTracker(policy, now=0.0, interval=1.0, rng=random.Random(0))


def answer_pings(tracker: LivenessTracker, delays: list[float]) -> float:
    """Let each silence end ``delay`` after the ping it provoked; return the final clock."""
    now = 0.0
    for delay in delays:
        now = tracker.next_ping_at()
        assert Decision.PING in tracker.poll(now)
        now += delay
        tracker.evidence(now)
        tracker.answered(now)
    return now


def lossy(answers: int, every: int) -> list[float]:
    """WAN answers (100 +- 10 ms), one in ``every`` retransmitted once; one in 10 of those,
    twice."""
    delays = []
    for index in range(answers):
        late = index % every == every - 1
        twice = late and index % (10 * every) == every - 1
        jitter = 0.01 if index % 2 else -0.01
        delays.append(WAN + jitter + (3 * RTO if twice else RTO if late else 0.0))
    return delays


def test_until_warmup_the_ceiling_applies() -> None:
    live = tracker()
    answer_pings(live, [LAN] * 4)
    assert live.timeout == 10.0


def test_a_fast_steady_link_brings_the_timeout_down_to_the_floor() -> None:
    live = tracker()
    answer_pings(live, [LAN] * 5)
    # Five answers cannot rule out one loss in a dozen: room for two retransmissions.
    assert live.timeout == pytest.approx(1.0 + LAN + 3 * (LAN + 0.2))
    answer_pings(live, [LAN] * 30)
    # Then z * min_std (0.28 s) covers one 200 ms retransmission: 1.28 s, and the floor.
    assert live.timeout == pytest.approx(max(1.25, 1.0 + LAN + Z8 * 0.05))
    assert live.suspect_after == pytest.approx(1.0 + (live.timeout - 1.0) / 2)


def test_a_clean_wan_allows_for_one_retransmission() -> None:
    live = tracker()
    answer_pings(live, [WAN] * 100)
    assert live.timeout == pytest.approx(1.0 + WAN + RTO)  # normal: 1 + 0.1 + 0.28: less


def test_the_normal_only_estimator_is_mean_plus_z_sigma() -> None:
    live = tracker(NORMAL_ONLY)
    answer_pings(live, [0.2, 0.4] * 10)
    assert live.timeout == pytest.approx(1.0 + 0.3 + Z8 * 0.1)


def test_loss_moves_the_timeout_by_whole_retransmission_steps() -> None:
    steps = {}
    for every in (50, 7, 4):  # 2 %, 14 %, 25 % of answers retransmitted
        live = tracker()
        answer_pings(live, lossy(1500, every) + [WAN] * ResponseEstimator.REFRESH_EVERY)
        responses = live.responses
        assert responses is not None
        retries = responses.retransmissions_allowed(1e-3)
        # Recomputed at most REFRESH_EVERY answers ago: the on-time ones since moved it little.
        expected = 1.0 + responses.top + (2**retries - 1) * responses.rto
        assert live.timeout == pytest.approx(expected, rel=1e-2)
        steps[every] = retries
    assert steps == {50: 1, 7: 3, 4: 4}


def test_a_lossy_link_survives_a_triple_retransmission_that_the_normal_model_does_not() -> None:
    delays = lossy(1500, 7)  # 14 % lost once, 1.4 % twice
    triple = WAN + 0.01 + 7 * RTO  # a segment lost three times in a row
    tail, normal = tracker(), tracker(NORMAL_ONLY)
    for live in (tail, normal):
        answer_pings(live, delays + [WAN] * ResponseEstimator.REFRESH_EVERY)
    assert tail.timeout > 1.0 + triple  # its silence (the idle interval + the answer) fits
    assert normal.timeout < 1.0 + triple
    assert tail.timeout < 1.0 + WAN + 15 * RTO  # a quadruple one is not waited for


def test_a_retransmission_raises_the_timeout_at_once_and_the_rise_lapses() -> None:
    live = tracker()
    responses = live.responses
    assert responses is not None
    answer_pings(live, [WAN] * 200)
    clean = live.timeout
    answer_pings(live, [WAN + 3 * RTO])  # lost twice: the path may have turned lossy
    assert live.timeout == pytest.approx(1.0 + WAN + 7 * RTO)  # at once: room for a triple loss
    # On-time answers bring it down when the timeout is next recomputed, REFRESH_EVERY
    # answers later (the late one has left the last RECENT by then).
    assert ResponseEstimator.RECENT <= ResponseEstimator.REFRESH_EVERY
    answer_pings(live, [WAN] * (ResponseEstimator.REFRESH_EVERY - 1))
    assert live.timeout == pytest.approx(1.0 + WAN + 7 * RTO)
    answer_pings(live, [WAN])
    # The tail falls back to one retransmission; the normal model still holds the outlier
    # (mean + z * sigma) until the window forgets it.
    assert responses.tail_allowance(1e-3) == pytest.approx(WAN + RTO)
    assert live.timeout == pytest.approx(1.0 + responses.mean + Z8 * responses.std)
    answer_pings(live, [WAN] * 100)
    assert live.timeout == pytest.approx(clean)


def test_a_slow_answer_that_is_not_late_counts_at_the_next_refresh() -> None:
    live = tracker()
    responses = live.responses
    assert responses is not None
    answer_pings(live, [WAN] * 200)
    clean = live.timeout
    # Slower than the slowest on-time answer expected (top: 0.1 s), not late (0.25 s): it
    # needed no retransmission, and its spread is far inside the timeout (a not-late
    # answer comes within LATE * rto_min of the on-time mean), so it waits for the next
    # refresh instead of costing a recomputation now.
    answer_pings(live, [WAN + 0.1])
    assert live.timeout == clean
    answer_pings(live, [WAN] * (ResponseEstimator.REFRESH_EVERY - 1))
    assert not responses.late_count
    fresh = responses.allowance(Z8, ADAPTIVE.adaptive.min_std, 1e-3)  # type: ignore[union-attr]
    assert live.timeout == pytest.approx(max(1.25, 1.0 + fresh))
    assert live.timeout > clean


def test_the_ceiling_bounds_the_timeout() -> None:
    live = tracker()
    answer_pings(live, [0.5, 4.0] * 5)
    assert live.timeout == 10.0


def test_a_dead_peer_is_convicted_at_the_adapted_timeout() -> None:
    live = tracker()
    last = answer_pings(live, [LAN] * 40)
    assert live.timeout == pytest.approx(1.0 + LAN + Z8 * 0.05)
    dead_at = last + live.timeout
    assert live.next_deadline() <= dead_at
    assert Decision.DEAD not in live.poll(dead_at - 0.01)
    assert Decision.DEAD in live.poll(dead_at)


def test_a_live_peer_answering_after_three_losses_is_not_convicted() -> None:
    live = tracker()
    last = answer_pings(live, lossy(1500, 7))
    ping_at = live.next_ping_at()
    assert Decision.PING in live.poll(ping_at)
    answer_at = ping_at + WAN + 0.01 + 7 * RTO  # the PING was lost three times in a row
    now = last
    while now < answer_at:
        now = min(live.next_deadline(), answer_at)
        assert Decision.DEAD not in live.poll(now)
    live.evidence(answer_at)
    live.answered(answer_at)
    assert live.silence(answer_at) == 0.0


def test_evidence_that_came_unasked_is_not_a_response_sample() -> None:
    live = tracker()
    for step in range(1, 10):
        live.evidence(step * 0.1)  # data, before any ping
    assert live.responses is not None
    assert len(live.responses) == 0


def test_a_busy_connection_keeps_pinging_and_times_the_answers_not_the_data() -> None:
    live = tracker()
    now, pings = 0.0, []
    while now < 10.0:  # data both ways every 100 ms, and a PONG 5 ms after each PING
        now = round(now + 0.1, 6)
        live.evidence(now)
        live.sent(now)
        if pings and now >= pings[-1] + 0.005 and live.first_ping is not None:
            live.answered(pings[-1] + 0.005)
        if now >= live.next_ping_at():
            assert Decision.PING in live.poll(now)
            pings.append(now)
    # Data never postpones an adaptive policy's ping: one per interval, busy or not.
    assert len(pings) == 10
    assert live.responses is not None
    assert live.responses.mean == pytest.approx(0.005)  # the PONG's delay, not the data's
    assert live.timeout < ADAPTIVE.timeout  # warmed up on a connection that never fell silent


def test_a_fixed_policy_sends_no_ping_on_a_busy_connection() -> None:
    fixed = LivenessTracker(Policy(interval=1.0, timeout=3.0), now=0.0, rng=random.Random(0))
    for step in range(1, 100):
        now = step * 0.1
        fixed.evidence(now)
        fixed.sent(now)
        assert Decision.PING not in fixed.poll(now)


def test_response_estimator_matches_the_textbook_mean_and_deviation() -> None:
    estimator = ResponseEstimator(window=4)
    for value in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]:
        estimator.add(value)
    assert list(estimator.samples) == [3.0, 4.0, 5.0, 6.0]
    assert estimator.mean == pytest.approx(4.5)
    assert estimator.std == pytest.approx(1.118033988749895)


def test_phi_8_is_about_five_and_a_half_standard_deviations() -> None:
    assert phi_to_z(8.0) == pytest.approx(5.612, abs=1e-3)


@pytest.mark.parametrize(
    ("adaptive", "message"),
    [
        (Adaptive(min_timeout=0.5), "must lie between interval"),
        (Adaptive(min_timeout=11.0), "must lie between interval"),
    ],
)
def test_the_floor_must_lie_between_interval_and_ceiling(adaptive: Adaptive, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy(interval=1.0, timeout=10.0, adaptive=adaptive)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"threshold": 0}, "threshold"),
        ({"window": 3, "warmup": 5}, "warmup"),
        ({"tail_threshold": 0}, r"tail_threshold \(phi\) must be in \(0, 15\] or None"),
        ({"tail_threshold": 16.0}, "tail_threshold"),
        ({"rto_min": 0.0}, "rto_min must be a positive number of seconds"),
        ({"rto_min": float("nan")}, "rto_min"),
        ({"loss_memory": 0}, "loss_memory must be a whole number >= 1"),
        ({"loss_memory": 2.5}, "loss_memory"),
        ({"tail_extra": 0}, "tail_extra must be a whole number >= 1"),
        ({"clean_after": 4}, r"clean_after must be a whole number from warmup \(5\)"),
        ({"clean_after": 101}, "to window"),
    ],
)
def test_adaptive_parameters_are_validated(fields: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Adaptive(min_timeout=2.0, **fields)  # type: ignore[arg-type]


def test_the_defaults_model_linux() -> None:
    adaptive = Adaptive(min_timeout=2.0)
    assert (adaptive.tail_threshold, adaptive.rto_min, adaptive.loss_memory) == (3.0, 0.2, 1000)


# ---------------------------------------------------------------------------- Policy.auto()

AUTO_LIKE = Policy(
    interval=1.0,
    timeout=8.0,
    jitter=0.0,
    adaptive=Adaptive(
        min_timeout=1.2, min_std=0.03, tail_threshold=6.0, tail_extra=4, clean_after=30
    ),
)


def test_the_auto_preset_is_what_these_tests_drive() -> None:
    auto = Policy.auto()
    assert (auto.interval, auto.timeout, auto.adaptive) == (1.0, 8.0, AUTO_LIKE.adaptive)


def test_the_auto_preset_takes_a_higher_floor_and_refuses_one_it_cannot_keep() -> None:
    patient = Policy.auto(min_timeout=2.0)
    assert patient.adaptive == msgspec.structs.replace(AUTO_LIKE.adaptive, min_timeout=2.0)
    assert (patient.interval, patient.timeout) == (1.0, 8.0)
    with pytest.raises(PolicyError, match="min_timeout"):
        Policy.auto(min_timeout=9.0)  # above the 8 s ceiling
    with pytest.raises(PolicyError, match="min_timeout"):
        Policy.auto(min_timeout=0.5)  # not even one interval


def test_with_a_strict_tail_a_clean_window_earns_the_floor_only_through_clean_after() -> None:
    strict = Policy(
        interval=1.0,
        timeout=8.0,
        jitter=0.0,
        adaptive=Adaptive(min_timeout=1.2, min_std=0.03, tail_threshold=6.0, tail_extra=4),
    )
    auto, plain = tracker(AUTO_LIKE), tracker(strict)
    for live in (auto, plain):
        answer_pings(live, [LAN] * 29)
    # 29 answers: half a late answer in 30 cannot be ruled out at 10**-6: three in a row.
    assert auto.timeout == pytest.approx(1.0 + LAN + 7 * (LAN + 0.2))
    answer_pings(auto, [LAN])
    answer_pings(plain, [LAN] * 200)
    assert auto.timeout == pytest.approx(1.2, abs=0.01)  # 30 on time: a clean link
    assert plain.timeout > 1.5  # without clean_after, hundreds more answers to get there


def test_the_first_late_answer_ends_the_clean_verdict_at_once() -> None:
    live = tracker(AUTO_LIKE)
    answer_pings(live, [LAN] * 60)
    assert live.timeout == pytest.approx(1.2, abs=0.01)
    answer_pings(live, [LAN + 0.2])  # one retransmission
    assert live.timeout > 2.0


def test_on_ten_percent_loss_the_auto_preset_waits_for_five_retransmissions_or_more() -> None:
    # Answers over a 10 %-loss path, each way: about 19 % late once, 2 % twice.
    delays = [LAN + (0.6 if i % 50 == 7 else 0.2 if i % 5 == 2 else 0.0) for i in range(1000)]
    live = tracker(AUTO_LIKE)
    answer_pings(live, delays)
    responses = live.responses
    assert responses is not None
    retries = responses.retransmissions_allowed(1e-6)
    assert retries >= 5
    assert live.timeout == pytest.approx(
        min(8.0, 1.0 + responses.top + (2**retries - 1) * responses.rto)
    )
    assert live.timeout > 7.0


def test_tail_extra_bounds_the_room_above_the_worst_answer_seen() -> None:
    delays = [LAN + (0.2 if i % 5 == 2 else 0.0) for i in range(300)]  # late once, never twice
    for extra, retries in ((2, 3), (3, 4)):
        adaptive = Adaptive(min_timeout=1.25, tail_threshold=6.0, tail_extra=extra)
        live = tracker(Policy(interval=1.0, timeout=8.0, jitter=0.0, adaptive=adaptive))
        answer_pings(live, delays)
        assert live.responses is not None
        assert live.responses.retransmissions_allowed(1e-6) == retries


def _pings_in_two_minutes(busy: bool) -> tuple[int, SessionPair]:
    pair = SessionPair(client_policy=Policy.auto(), server_policy=Policy.auto(), seed=3)
    client, server = pair.session("client"), pair.session("server")
    for _ in range(1200):  # two minutes; busy: a message each way every 100 ms
        if busy:
            client.send_message(b"x")
            server.send_message(b"y")
            pair.exchange()
        pair.advance(0.1)
    return client.stats(pair.now).pings_sent + server.stats(pair.now).pings_sent, pair


def test_a_busy_session_keeps_timing_its_pongs_and_settles_on_the_floor() -> None:
    busy, pair = _pings_in_two_minutes(busy=True)
    idle, _ = _pings_in_two_minutes(busy=False)
    assert abs(busy - idle) <= 0.1 * idle  # one exchange per interval, busy or idle
    tracker = pair.session("client").tracker
    assert tracker is not None
    assert tracker.timeout == pytest.approx(1.2, abs=0.01)  # its PONGs timed: a clean link


SIDES: tuple[Side, Side] = ("client", "server")


def _idle_pings(client_policy: Policy, server_policy: Policy, minutes: int) -> SessionPair:
    pair = SessionPair(client_policy=client_policy, server_policy=server_policy, seed=5)
    pair.advance(60.0 * minutes)
    for side in SIDES:
        assert pair.session(side).death is None
    return pair


def test_adaptive_sides_ping_as_often_as_a_fixed_leader_and_both_learn() -> None:
    auto = _idle_pings(Policy.auto(), Policy.auto(), minutes=10)
    fixed = _idle_pings(Policy(), Policy(), minutes=10)
    client, server = (auto.session(side).stats(auto.now).pings_sent for side in SIDES)
    alone = sum(fixed.session(side).stats(fixed.now).pings_sent for side in SIDES)
    # Policy(): the initiator pings every 0.75-1 s, the responder never: ~686 in 10 minutes.
    assert 600 / 1.0 < alone < 600 / 0.75
    assert abs((client + server) - alone) <= 0.05 * alone  # one exchange per interval
    assert server == 0  # the responder learns from the echoes of its PONGs: it only answers
    for side in SIDES:
        tracker = auto.session(side).tracker
        assert tracker is not None
        assert tracker.timeout == pytest.approx(1.2, abs=0.01)  # both learned a clean link


def test_an_adaptive_side_whose_peer_takes_no_turn_still_pings_every_interval() -> None:
    # A fixed responder only answers: the adaptive initiator's own pings must keep its
    # silences inside the 1.2 s floor, so it pings within one interval of its last PING.
    pair = SessionPair(client_policy=Policy.auto(), server_policy=Policy(), seed=5)
    client = pair.session("client")
    gaps, last = [], 0.0
    for _ in range(6000):  # 10 minutes in 0.1 s steps
        pair.advance(0.1)
        tracker = client.tracker
        assert tracker is not None
        if tracker.last_ping != last:
            gaps.append(tracker.last_ping - last)
            last = tracker.last_ping
    assert pair.session("server").stats(pair.now).pings_sent == 0
    assert client.death is None
    assert client.state.value == "alive"
    assert max(gaps[1:]) <= 1.0 + 1e-9
    assert client.tracker is not None
    assert client.tracker.timeout == pytest.approx(1.2, abs=0.01)


def test_answers_that_take_no_time_still_end_the_warmup() -> None:
    # An in-memory wire answers in 0.0 s: the timeout must still leave the ceiling at once
    # when the warm-up is over, not REFRESH_EVERY answers later.
    live = tracker()
    answer_pings(live, [0.0] * ADAPTIVE.adaptive.warmup)  # type: ignore[union-attr]
    assert live.timeout < 10.0


def test_a_round_trip_timed_for_us_teaches_as_an_answer_does() -> None:
    # Under turns, half of the frames a side waits for are the peer's turns: a round trip
    # of theirs that came a retransmission late must raise the timeout as our own would.
    live = tracker()
    answer_pings(live, [WAN] * 200)
    clean = live.timeout
    live.round_trip(WAN + RTO)
    assert live.timeout > clean + RTO
    fixed = LivenessTracker(Policy(), now=0.0)
    fixed.round_trip(5.0)  # a fixed policy has nothing to learn
    assert fixed.timeout == Policy().timeout


def test_each_adaptive_side_learns_from_every_exchange_not_only_its_own_turns() -> None:
    # Each side times the answers to its own PINGs, and the peer's PINGs time its PONGs
    # (Feature.ECHO): a side has as many samples as there were exchanges, not half.
    pair = _idle_pings(Policy.auto(), Policy.auto(), minutes=1)
    exchanges = sum(pair.session(side).stats(pair.now).pings_sent for side in SIDES)
    for side in SIDES:
        tracker = pair.session(side).tracker
        assert tracker is not None
        assert tracker.responses is not None
        assert len(tracker.responses) >= 0.9 * exchanges


def test_jitter_just_above_the_slowest_expected_answer_is_not_a_retransmission() -> None:
    # A clean LAN: answers of 1 ms +- 0.1 ms. One of 2 ms is far above top (mean + 3
    # deviations) but far below a retransmission (at least an RTO, 200 ms, late): the
    # timeout must stay on the floor, not make room for a retransmission more.
    live = tracker(Policy.auto())
    responses = live.responses
    assert responses is not None
    answer_pings(live, [LAN + (0.0001 if index % 2 else -0.0001) for index in range(60)])
    assert live.timeout == pytest.approx(1.2, abs=0.01)
    answer_pings(live, [2 * LAN])
    assert responses.top < 2 * LAN
    assert responses.retransmissions(2 * LAN) == 0
    assert live.timeout == pytest.approx(1.2, abs=0.01)
