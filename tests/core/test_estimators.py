from __future__ import annotations

import math

import pytest

from pulsewire.core.estimators import RttEstimator


def test_empty_estimator_has_no_figures() -> None:
    rtt = RttEstimator()
    assert (rtt.count, rtt.last, rtt.srtt, rtt.rttvar) == (0, None, None, None)


def test_first_sample_sets_srtt_and_half_of_it_as_variance() -> None:
    rtt = RttEstimator()
    rtt.add(0.2)
    assert (rtt.srtt, rtt.rttvar, rtt.last) == (0.2, 0.1, 0.2)


def test_later_samples_follow_rfc_6298() -> None:
    rtt = RttEstimator()
    rtt.add(0.2)
    rtt.add(0.6)
    # RTTVAR = 3/4 * 0.1 + 1/4 * |0.2 - 0.6|, computed with the old SRTT; SRTT = 7/8 0.2 + 1/8 0.6
    assert rtt.rttvar == pytest.approx(0.175)
    assert rtt.srtt == pytest.approx(0.25)
    assert rtt.last == 0.6


def test_min_max_count_track_every_sample() -> None:
    rtt = RttEstimator()
    for sample in (0.3, 0.1, 0.5, 0.2):
        rtt.add(sample)
    assert (rtt.count, rtt.minimum, rtt.maximum, rtt.last) == (4, 0.1, 0.5, 0.2)


def test_steady_rtt_converges_with_vanishing_variance() -> None:
    rtt = RttEstimator()
    rtt.add(1.0)
    for _ in range(200):
        rtt.add(0.05)
    assert rtt.srtt == pytest.approx(0.05)
    assert rtt.rttvar is not None
    assert math.isclose(rtt.rttvar, 0.0, abs_tol=1e-9)


def test_recent_percentiles_use_nearest_rank_over_the_last_samples() -> None:
    from pulsewire.core.estimators import RttEstimator

    estimator = RttEstimator()
    assert estimator.percentile(0.5) is None
    for value in range(1, 101):  # only the last 64 (37..100) are kept
        estimator.add(float(value))
    assert estimator.percentile(0.5) == 68.0
    assert estimator.percentile(0.99) == 100.0
    assert estimator.percentile(0.0) == 37.0
