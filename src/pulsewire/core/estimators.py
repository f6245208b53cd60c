"""Round-trip-time statistics, measured on the sender's own clock."""

from __future__ import annotations

import math

__all__ = ["RttEstimator"]


class RttEstimator:
    """Smoothed RTT and variance as in RFC 6298, plus last, min and max.

    ``srtt`` follows the RFC's alpha = 1/8 and ``rttvar`` its beta = 1/4; the first sample sets
    ``srtt = r`` and ``rttvar = r / 2``.
    """

    __slots__ = ("count", "last", "maximum", "minimum", "rttvar", "srtt")

    ALPHA = 1 / 8
    BETA = 1 / 4

    def __init__(self) -> None:
        self.count = 0
        self.last: float | None = None
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.minimum = math.inf
        self.maximum = 0.0

    def add(self, rtt: float) -> None:
        self.count += 1
        self.last = rtt
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
