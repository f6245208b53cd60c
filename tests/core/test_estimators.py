from __future__ import annotations

import math
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulsewire.core.estimators import ResponseEstimator, RttEstimator


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
    for value in range(1, 101):  # only the last 32 (69..100) are kept
        estimator.add(float(value))
    assert estimator.percentile(0.5) == 84.0
    assert estimator.percentile(0.99) == 100.0
    assert estimator.percentile(0.0) == 69.0


# ---------------------------------------------------------------- response delays


def brute_force(
    delays: list[float], window: int, rto_min: float, *, read_each: bool
) -> tuple[list[bool], list[float]]:
    """Late flags and the window, recomputed from scratch the way the estimator defines them:
    a delay is late against the on-time delays of the window as it stood at the last
    refresh. A refresh comes after a late delay, and otherwise after as many more delays as
    the window holds, up to REFRESH_EVERY; reading a figure refreshes too (``read_each``:
    after every delay, so each is judged against the window as it stood when it arrived)."""
    flags: list[bool] = []
    stored = array("f", delays).tolist()  # the window keeps single precision
    late_above, due = math.inf, 1
    for index, delay in enumerate(stored):
        flags.append(delay > late_above)
        added = index + 1
        if read_each or added == due or flags[-1]:
            kept = list(zip(stored[:added], flags, strict=True))[-window:]
            on_time = [d for d, late in kept if not late]
            late_above = sum(on_time) / len(on_time) + 0.75 * rto_min if on_time else math.inf
            due = added + min(ResponseEstimator.REFRESH_EVERY, len(kept))
    return flags, stored[-window:]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=30.0), min_size=1, max_size=120),
    st.integers(1, 40),
    st.booleans(),
)
def test_response_bookkeeping_matches_a_recount_of_the_window(
    delays: list[float], window: int, read_each: bool
) -> None:
    estimator = ResponseEstimator(window, rto_min=0.2)
    for delay in delays:
        estimator.add(delay)
        if read_each:
            assert estimator.late_above >= 0.15
    flags, kept = brute_force(delays, window, 0.2, read_each=read_each)
    late = flags[-window:]
    on_time = [d for d, f in zip(kept, late, strict=True) if not f]
    assert list(estimator.samples) == kept
    assert estimator.late_count == sum(late)
    assert estimator.maximum == max(kept)
    assert estimator.recent_maximum == max(kept[-min(window, ResponseEstimator.RECENT) :])
    assert estimator.mean == pytest.approx(sum(kept) / len(kept), abs=1e-9)
    if on_time:
        assert estimator.base_mean == pytest.approx(sum(on_time) / len(on_time), abs=1e-9)
        assert estimator.late_above == pytest.approx(estimator.base_mean + 0.15)
    else:
        assert estimator.late_above == math.inf


def test_add_refreshes_at_once_after_a_late_answer_and_otherwise_every_few() -> None:
    estimator = ResponseEstimator(100, warmup=5)
    assert [estimator.add(0.05) for _ in range(5)] == [False] * 4 + [True]  # the warm-up
    for _ in range(200):
        estimator.add(0.05)
    refreshed = [estimator.add(0.05) for _ in range(4 * ResponseEstimator.REFRESH_EVERY)]
    assert sum(refreshed) == 4  # a full window: once every REFRESH_EVERY on-time answers
    assert estimator.add(0.05 + 0.25)  # late: refreshed at once, and counted at once
    assert estimator.late_count == 1
    assert estimator.add(0.05 + 0.25)
    assert estimator.late_count == 2


@pytest.mark.parametrize("delay", [0.1, 0.7, 0.015625])
def test_a_coarse_clocks_equal_delays_do_not_refresh_every_answer(delay: float) -> None:
    # 0.1 and 0.7 have no exact single-precision form (one rounds up, the other down): the
    # window keeps a rounded delay, and the same delay must compare equal to it, not above
    # the top it makes.
    estimator = ResponseEstimator(100)
    refreshed = sum(estimator.add(delay) for _ in range(1000))
    assert refreshed <= 1000 / ResponseEstimator.REFRESH_EVERY + 10
    assert estimator.top == pytest.approx(delay)


def test_a_retransmitted_answer_is_late_and_jitter_is_not() -> None:
    estimator = ResponseEstimator(100, rto_min=0.2)
    for delay in [0.040, 0.050, 0.045, 0.180, 0.045]:  # 0.180: 135 ms of jitter, not late
        estimator.add(delay)
    assert estimator.late_count == 0
    estimator.add(0.040 + 0.25)  # one RTO (RTT + 200 ms) after an on-time answer
    assert estimator.late_count == 1
    assert estimator.base_mean == pytest.approx(0.072)
    assert estimator.rto == pytest.approx(0.272)


def test_the_tail_allows_one_more_retransmission_per_factor_of_the_late_share() -> None:
    """r ** (k + 1) <= 10 ** -3: 1 % late -> k = 1, 5 % -> 2, 1/7 -> 3, 20 % -> 4."""
    for share, wanted in [(0.01, 1), (0.05, 2), (1 / 7, 3), (0.2, 4)]:
        estimator = ResponseEstimator(100, rto_min=0.2, loss_memory=1000)
        for index in range(2000):
            late = index % round(1 / share) == 0
            estimator.add(0.05 + (0.25 if late else 0.0))
        estimator.add(0.05 + 0.25 * 15)  # four retransmissions once: the cap leaves room
        for _ in range(ResponseEstimator.RECENT):
            estimator.add(0.05)
        assert estimator.late_share == pytest.approx(share, rel=0.15)
        assert estimator.retransmissions_allowed(1e-3) == wanted, share


def test_a_fresh_estimator_is_cautious_until_answers_accumulate() -> None:
    estimator = ResponseEstimator(100)
    for _ in range(5):
        estimator.add(0.05)
    assert estimator.late_share == pytest.approx(0.5 / 6, rel=0.01)
    assert estimator.retransmissions_allowed(1e-3) == 2  # 1 late in 12 cannot be ruled out
    for _ in range(30):
        estimator.add(0.05)
    assert estimator.retransmissions_allowed(1e-3) == 1


def test_a_recent_retransmission_raises_the_allowance_at_once_then_lapses() -> None:
    estimator = ResponseEstimator(100)
    for _ in range(200):
        estimator.add(0.05)
    assert estimator.retransmissions_allowed(1e-3) == 1
    estimator.add(0.05 + 3 * 0.25)  # lost twice: 3 RTOs late
    assert estimator.retransmissions(estimator.recent_maximum) == 2
    assert estimator.retransmissions_allowed(1e-3) == 3
    for _ in range(ResponseEstimator.RECENT):
        estimator.add(0.05)
    assert estimator.retransmissions_allowed(1e-3) == 1


def test_jitter_that_passes_for_loss_cannot_push_the_tail_without_bound() -> None:
    estimator = ResponseEstimator(100)
    for index in range(500):
        estimator.add(0.05 if index % 2 else 0.6)  # half the answers 550 ms "late"
    assert estimator.late_share > 0.4  # r ** (k + 1) <= 1e-3 would need k >= 7
    worst = estimator.retransmissions(estimator.maximum)
    assert estimator.retransmissions_allowed(1e-3) == worst + 2


def test_the_late_share_restarts_when_the_path_changes() -> None:
    estimator = ResponseEstimator(100, loss_memory=1000)
    for _ in range(1000):
        estimator.add(0.05)
    assert estimator.late_share < 0.002
    for index in range(40):  # the path turns lossy: every third answer late
        estimator.add(0.3 if index % 3 == 0 else 0.05)
    assert estimator.late_share == pytest.approx((estimator.late_count + 0.5) / 101, rel=0.2)
    assert estimator.late_share > 0.1
    for _ in range(1000):
        estimator.add(0.3 if _ % 3 == 0 else 0.05)
    assert estimator.late_share == pytest.approx(1 / 3, rel=0.1)
    for _ in range(100):  # and recovers: the window holds no late answer any more
        estimator.add(0.05)
    assert estimator.late_share < 0.01


def test_the_allowance_is_the_larger_of_the_normal_and_the_tail() -> None:
    estimator = ResponseEstimator(100)
    for _ in range(100):
        estimator.add(0.001)  # a LAN: z * min_std (0.28 s at phi 8) beats one RTO (0.2 s)
    z = 5.612
    assert estimator.allowance(z, 0.05, 1e-3) == pytest.approx(0.001 + z * 0.05)
    assert estimator.tail_allowance(1e-3) == pytest.approx(0.001 + 0.201)
    for _ in range(100):
        estimator.add(0.1)  # a 100 ms path: one retransmission (0.1 + 0.3) beats z * min_std
    assert estimator.allowance(z, 0.05, 1e-3) == pytest.approx(0.1 + 0.3)
    assert estimator.allowance(z, 0.05, None) == pytest.approx(0.1 + z * 0.05)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=1, max_size=300))
def test_figures_equal_rfc_6298_applied_sample_by_sample(samples: list[float]) -> None:
    # The estimator folds samples in batches; the figures must be exactly those of the
    # textbook per-sample update, whenever they are read.
    estimator = RttEstimator()
    srtt = rttvar = None
    for index, sample in enumerate(samples):
        estimator.add(sample)
        if srtt is None or rttvar is None:
            srtt, rttvar = sample, sample / 2
        else:
            rttvar = (1 - RttEstimator.BETA) * rttvar + RttEstimator.BETA * abs(srtt - sample)
            srtt = (1 - RttEstimator.ALPHA) * srtt + RttEstimator.ALPHA * sample
        if index % 7 == 0 or index == len(samples) - 1:  # read now and then, not always
            assert (estimator.srtt, estimator.rttvar) == (srtt, rttvar)
            assert estimator.count == index + 1
            assert estimator.last == sample
            assert estimator.minimum == min(samples[: index + 1])
            assert estimator.maximum == max(samples[: index + 1])
            kept = samples[max(0, index + 1 - RttEstimator.RECENT) : index + 1]
            assert sorted(estimator.recent()) == sorted(kept)
