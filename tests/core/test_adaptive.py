"""The adaptive policy: the timeout follows observed response delays, within floor and ceiling."""

from __future__ import annotations

import random

import pytest

from pulsewire.core.estimators import ResponseEstimator, phi_to_z
from pulsewire.core.liveness import Decision, LivenessTracker
from pulsewire.core.policy import Adaptive, Policy
from pulsewire.errors import PolicyError

ADAPTIVE = Policy(
    interval=1.0, timeout=10.0, jitter=0.0, adaptive=Adaptive(min_timeout=1.5, warmup=5)
)


def answer_pings(tracker: LivenessTracker, delays: list[float], now: float = 0.0) -> float:
    """Let each silence end ``delay`` after the ping it provoked; return the final clock."""
    for delay in delays:
        now = tracker.next_ping_at()
        assert Decision.PING in tracker.poll(now)
        now += delay
        tracker.evidence(now)
    return now


def test_until_warmup_the_ceiling_applies() -> None:
    tracker = LivenessTracker(ADAPTIVE, 1.0, 0.0, random.Random(0))
    answer_pings(tracker, [0.001] * 4)
    assert tracker.timeout == 10.0


def test_a_fast_steady_link_brings_the_timeout_down_to_the_floor() -> None:
    tracker = LivenessTracker(ADAPTIVE, 1.0, 0.0, random.Random(0))
    answer_pings(tracker, [0.001] * 5)
    assert tracker.timeout == 1.5  # interval + 0.001 + z * min_std = 1.28 < floor
    assert tracker.suspect_after == pytest.approx(1.25)


def test_a_slow_jittery_link_raises_the_timeout_by_mean_plus_z_sigma() -> None:
    tracker = LivenessTracker(ADAPTIVE, 1.0, 0.0, random.Random(0))
    delays = [0.2, 0.4] * 10
    answer_pings(tracker, delays)
    expected = 1.0 + 0.3 + phi_to_z(8.0) * 0.1
    assert tracker.timeout == pytest.approx(expected)


def test_the_ceiling_bounds_the_timeout() -> None:
    tracker = LivenessTracker(ADAPTIVE, 1.0, 0.0, random.Random(0))
    answer_pings(tracker, [0.5, 4.0] * 5)
    assert tracker.timeout == 10.0


def test_a_dead_peer_is_convicted_at_the_adapted_timeout() -> None:
    tracker = LivenessTracker(ADAPTIVE, 1.0, 0.0, random.Random(0))
    last = answer_pings(tracker, [0.001] * 5)
    assert tracker.deadline() <= last + 1.5
    assert Decision.DEAD not in tracker.poll(last + 1.5 - 0.01)
    assert Decision.DEAD in tracker.poll(last + 1.5)


def test_evidence_that_came_unasked_is_not_a_response_sample() -> None:
    tracker = LivenessTracker(ADAPTIVE, 1.0, 0.0, random.Random(0))
    for step in range(1, 20):
        tracker.evidence(step * 0.1)  # busy link: no ping was ever needed
    assert tracker.responses is not None
    assert len(tracker.responses) == 0


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


def test_adaptive_parameters_are_validated() -> None:
    with pytest.raises(PolicyError, match="threshold"):
        Adaptive(min_timeout=2.0, threshold=0)
    with pytest.raises(PolicyError, match="warmup"):
        Adaptive(min_timeout=2.0, window=3, warmup=5)
