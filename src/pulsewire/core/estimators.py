"""Estimators fed by the liveness machinery: RTT statistics and the adaptive timeout.

Both are measured on this side's own clock only, so neither needs synchronised clocks.
"""

from __future__ import annotations

import math
from collections import deque
from statistics import NormalDist

__all__ = ["ResponseEstimator", "RttEstimator", "phi_to_z"]


class RttEstimator:
    """Smoothed RTT and variance as in RFC 6298, plus last, min, max and recent percentiles.

    ``srtt`` follows the RFC's alpha = 1/8 and ``rttvar`` its beta = 1/4; the first sample sets
    ``srtt = r`` and ``rttvar = r / 2``. The last ``RECENT`` samples are kept for percentiles.
    """

    __slots__ = ("count", "last", "maximum", "minimum", "recent", "rttvar", "srtt")

    ALPHA = 1 / 8
    BETA = 1 / 4
    RECENT = 64

    def __init__(self) -> None:
        self.count = 0
        self.last: float | None = None
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.minimum = math.inf
        self.maximum = 0.0
        self.recent: deque[float] = deque(maxlen=self.RECENT)

    def add(self, rtt: float) -> None:
        self.count += 1
        self.last = rtt
        self.recent.append(rtt)
        if rtt < self.minimum:
            self.minimum = rtt
        if rtt > self.maximum:
            self.maximum = rtt
        if self.srtt is None or self.rttvar is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
            return
        self.rttvar = (1 - self.BETA) * self.rttvar + self.BETA * abs(self.srtt - rtt)
        self.srtt = (1 - self.ALPHA) * self.srtt + self.ALPHA * rtt

    def percentile(self, fraction: float) -> float | None:
        """The ``fraction`` quantile (0..1) of the recent samples, nearest-rank; None if empty."""
        if not self.recent:
            return None
        ordered = sorted(self.recent)
        rank = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
        return ordered[rank]


def phi_to_z(phi: float) -> float:
    """The normal quantile at which a live peer's answer is late with probability 10**-phi."""
    return NormalDist().inv_cdf(1.0 - 10.0 ** (-phi))


class ResponseEstimator:
    """Mean and standard deviation of response delays over a sliding window.

    A response delay is the time from the first PING sent into a silence to the next
    evidence of life: the round trip plus whatever the network added (queueing, TCP
    retransmissions after a loss). It is what the adaptive timeout must allow for after
    the idle interval. Updates are O(1); the sums are recomputed once per window so
    floating-point drift cannot accumulate.
    """

    __slots__ = ("_since_refresh", "_sum", "_sum_sq", "samples")

    def __init__(self, window: int) -> None:
        self.samples: deque[float] = deque(maxlen=window)
        self._sum = 0.0
        self._sum_sq = 0.0
        self._since_refresh = 0

    def __len__(self) -> int:
        return len(self.samples)

    def add(self, delay: float) -> None:
        samples = self.samples
        if len(samples) == samples.maxlen:
            old = samples[0]
            self._sum -= old
            self._sum_sq -= old * old
        samples.append(delay)
        self._sum += delay
        self._sum_sq += delay * delay
        self._since_refresh += 1
        if self._since_refresh >= len(samples):
            self._sum = math.fsum(samples)
            self._sum_sq = math.fsum(x * x for x in samples)
            self._since_refresh = 0

    @property
    def mean(self) -> float:
        return self._sum / len(self.samples) if self.samples else 0.0

    @property
    def std(self) -> float:
        count = len(self.samples)
        if count < 2:
            return 0.0
        mean = self._sum / count
        return math.sqrt(max(0.0, self._sum_sq / count - mean * mean))
