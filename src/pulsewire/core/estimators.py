"""Estimators fed by the liveness machinery: RTT statistics and the adaptive timeout.

Both are measured on this side's own clock only, so neither needs synchronised clocks.
"""

from __future__ import annotations

import math
from array import array
from statistics import NormalDist

__all__ = ["ResponseEstimator", "RttEstimator", "phi_to_z"]


class RttEstimator:
    """Smoothed RTT and variance as in RFC 6298, plus last, min, max and recent percentiles.

    ``srtt`` follows the RFC's alpha = 1/8 and ``rttvar`` its beta = 1/4; the first sample sets
    ``srtt = r`` and ``rttvar = r / 2``. The last ``RECENT`` samples are kept, in a ring of
    doubles stored in place, for percentiles.
    """

    __slots__ = ("_ring", "count", "maximum", "minimum", "rttvar", "srtt")

    ALPHA = 1 / 8
    BETA = 1 / 4
    RECENT = 32  #: a power of two

    def __init__(self) -> None:
        self._ring = array("d", bytes(8 * self.RECENT))
        self.count = 0  #: samples so far
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.minimum = math.inf  #: the smallest sample (``inf`` before the first)
        self.maximum = 0.0  #: the largest sample (0.0 before the first)

    def add(self, rtt: float) -> None:
        count = self.count
        self._ring[count & _RING_MASK] = rtt
        self.count = count + 1
        if rtt < self.minimum:
            self.minimum = rtt
        if rtt > self.maximum:
            self.maximum = rtt
        srtt, rttvar = self.srtt, self.rttvar
        if srtt is None or rttvar is None:
            self.srtt, self.rttvar = rtt, rtt / 2
            return
        error = srtt - rtt
        self.rttvar = _KEEP_VARIANCE * rttvar + _BETA * (error if error > 0 else -error)
        self.srtt = _KEEP_SRTT * srtt + _ALPHA * rtt

    @property
    def last(self) -> float | None:
        return self._ring[(self.count - 1) & _RING_MASK] if self.count else None

    def recent(self) -> list[float]:
        """The last ``RECENT`` samples (fewer before that many), in no particular order."""
        return self._ring[: min(self.count, self.RECENT)].tolist()

    def percentile(self, fraction: float) -> float | None:
        """The ``fraction`` quantile (0..1) of the recent samples, nearest-rank; None if empty."""
        ordered = sorted(self.recent())
        if not ordered:
            return None
        rank = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
        return ordered[rank]


_RING_MASK = RttEstimator.RECENT - 1
_ALPHA, _BETA = RttEstimator.ALPHA, RttEstimator.BETA
_KEEP_SRTT, _KEEP_VARIANCE = 1 - _ALPHA, 1 - _BETA


def phi_to_z(phi: float) -> float:
    """The normal quantile at which a live peer's answer is late with probability 10**-phi."""
    return NormalDist().inv_cdf(1.0 - 10.0 ** (-phi))


class ResponseEstimator:
    """Response delays over a sliding window, and the allowance a live answer may need.

    A response delay is the time from the first PING sent into a silence to the next
    evidence of life: the round trip plus whatever the network added. Over TCP its
    distribution has a body (the round trip and its jitter) and a stepwise tail: a segment
    lost ``k`` times in a row arrives ``(2**k - 1)`` RTOs late, the RTO doubling at each
    retry. A normal fit to the window describes the body and the common single
    retransmission, not the double or triple one that outlasts a timeout, so two
    allowances are kept, and the larger one is used:

    - **normal** (phi accrual): ``mean + z * max(std, min_std)`` of every delay in the window;
    - **retransmission tail**: ``top + (2**k - 1) * rto``, room for ``k`` retransmissions
      in a row, where

      - a delay is *late* when, as it arrives, it exceeds the mean ``b`` of the on-time (not
        late) delays in the window by more than 3/4 of ``rto_min``: a retransmitted answer
        comes at least one RTO, so at least ``rto_min``, after an on-time one (RFC 6298;
        Linux uses ``srtt + max(4 * rttvar, 200 ms)``);
      - ``rto = b + rto_min`` is the RTO a kernel uses on a steady path, and
        ``top = b + 3 * sb`` the slowest on-time answer (``sb``: the on-time deviation);
      - ``r``, the share of late answers, is weighted exponentially over about
        ``loss_memory`` answers, starting from half a late answer in one; it restarts
        from the window's share when the window holds three standard errors more late
        answers than ``r`` predicts, or that many fewer than half (the path changed);
      - ``k`` is the fewest retransmissions (at least 1) with ``r ** (k + 1) <= target``,
        ``r`` being taken as the chance of each further retransmission; at least one more
        than the slowest of the last :attr:`RECENT` answers needed (a retransmission
        raises the allowance at once, before ``r`` catches up; an answer needed one only
        if it was late, so jitter just above ``top`` raises nothing), and at most ``extra``
        (default two) more than the slowest answer in the window needed (jitter wide
        enough to pass for retransmissions cannot push the allowance without bound);
      - with ``clean_after`` set, a window of at least that many answers none of which
        was late is a clean link: ``k`` is 1 whatever the start of ``r`` says (with a
        strict target the half-answer start would take hundreds of answers to fade), and
        the first late answer raises it at once.

    Updates are O(1); the maxima are found when the allowance is read, and the sums are
    recomputed once per window so floating-point drift cannot accumulate. The window is a ring of
    doubles and a ring of flags stored in place: an idle connection of an adaptive policy
    keeps about a kilobyte for it, not a float object per delay. Pure: no clock, no I/O.
    """

    RECENT = 5  #: answers whose slowest sets the fewest retransmissions allowed
    LATE = 0.75  #: a delay this many ``rto_min`` above the on-time mean is late

    __slots__ = (
        "_base_count",
        "_base_sum",
        "_base_sum_sq",
        "_clean_after",
        "_count",
        "_decay",
        "_extra",
        "_late",
        "_late_weight",
        "_next",
        "_ring",
        "_since_refresh",
        "_sum",
        "_sum_sq",
        "_weight",
        "rto_min",
    )

    def __init__(
        self,
        window: int,
        *,
        rto_min: float = 0.2,
        loss_memory: int = 1000,
        extra: int = 2,
        clean_after: int | None = None,
    ) -> None:
        self._ring = array("d", bytes(8 * window))  #: the window's delays, oldest at _next
        self._late = bytearray(window)  #: 1 where the delay in the same place was late
        self._count = 0  #: delays in the window
        self._next = 0  #: where the next delay goes
        self._extra = extra
        self._clean_after = clean_after
        self.rto_min = rto_min
        self._decay = 1.0 - 1.0 / loss_memory
        self._sum = self._sum_sq = 0.0
        self._base_count = 0
        self._base_sum = self._base_sum_sq = 0.0
        self._late_weight = self._weight = 0.0  #: exponentially weighted late / all answers
        self._since_refresh = 0

    def __len__(self) -> int:
        return self._count

    @property
    def samples(self) -> list[float]:
        """The delays in the window, oldest first."""
        ring, count, start = self._ring, self._count, self._next
        if count < len(ring):
            return ring[:count].tolist()
        return ring[start:].tolist() + ring[:start].tolist()

    def add(self, delay: float) -> bool:
        """Record one response delay; return True when it was late."""
        # Runs once per answer on every connection of an adaptive policy: the sums are
        # read into locals and written back once.
        ring, flags, where, size = self._ring, self._late, self._next, self._count
        base_count, base_sum, base_sum_sq = self._base_count, self._base_sum, self._base_sum_sq
        total, total_sq = self._sum, self._sum_sq
        # As late_above, from the sums in hand (with no on-time answer yet, nothing is late).
        late = base_count > 0 and delay > base_sum / base_count + self.LATE * self.rto_min
        window = len(ring)
        if size == window:
            old = ring[where]
            total -= old
            total_sq -= old * old
            if not flags[where]:
                base_count -= 1
                base_sum -= old
                base_sum_sq -= old * old
        else:
            size += 1
            self._count = size
        ring[where] = delay
        flags[where] = late
        self._next = where + 1 if where + 1 < window else 0
        square = delay * delay
        self._sum = total + delay
        self._sum_sq = total_sq + square
        if not late:
            base_count += 1
            base_sum += delay
            base_sum_sq += square
        self._base_count = base_count
        self._base_sum = base_sum
        self._base_sum_sq = base_sum_sq
        decay = self._decay
        late_weight = self._late_weight = decay * self._late_weight + late
        weight = self._weight = decay * self._weight + 1.0
        # The path changed when the window's count of late answers is three standard errors
        # above what the long-run share predicts, or that far below half of it.
        expected = (late_weight + 0.5) / (weight + 1.0) * size
        count = size - base_count
        spread = 3.0 * math.sqrt(count) if count else 0.0
        if count - spread > expected or count + spread + 1.0 < expected / 2:
            self._late_weight = float(count)
            self._weight = float(size)
        self._since_refresh += 1
        if self._since_refresh >= size:
            self._refresh()
        return late

    def _refresh(self) -> None:
        count = self._count
        samples = self._ring[:count].tolist()
        base = [x for x, late in zip(samples, self._late[:count], strict=True) if not late]
        self._sum = math.fsum(samples)
        self._sum_sq = math.fsum(x * x for x in samples)
        self._base_count = len(base)
        self._base_sum = math.fsum(base)
        self._base_sum_sq = math.fsum(x * x for x in base)
        self._since_refresh = 0

    # ------------------------------------------------------------------ the body

    @property
    def mean(self) -> float:
        return self._sum / self._count if self._count else 0.0

    @property
    def std(self) -> float:
        return _std(self._count, self._sum, self._sum_sq)

    # ------------------------------------------------------------------ the tail

    @property
    def maximum(self) -> float:
        """The slowest answer in the window (0 when empty)."""
        count = self._count
        return max(self._ring[:count]) if count else 0.0

    @property
    def recent_maximum(self) -> float:
        """The slowest of the last :attr:`RECENT` answers (0 when empty)."""
        ring, end = self._ring, self._next
        wanted = min(self.RECENT, self._count)
        if not wanted:
            return 0.0
        if end >= wanted:
            return max(ring[end - wanted : end])
        return max(max(ring[:end], default=0.0), max(ring[len(ring) - (wanted - end) :]))

    @property
    def base_mean(self) -> float:
        """Mean of the on-time (not late) delays in the window; of all when none is."""
        if self._base_count == 0:
            return self.mean
        return self._base_sum / self._base_count

    @property
    def base_std(self) -> float:
        if self._base_count == 0:
            return self.std
        return _std(self._base_count, self._base_sum, self._base_sum_sq)

    @property
    def late_count(self) -> int:
        """Late delays in the window."""
        return self._count - self._base_count

    @property
    def late_share(self) -> float:
        """``r``: the weighted share of late answers, started from half an answer."""
        return (self._late_weight + 0.5) / (self._weight + 1.0)

    @property
    def rto(self) -> float:
        """The retransmission timeout the kernel would use: on-time mean plus ``rto_min``."""
        return self.base_mean + self.rto_min

    @property
    def late_above(self) -> float:
        """Delays slower than this are late: the on-time mean plus ``LATE * rto_min``."""
        return self.base_mean + self.LATE * self.rto_min

    @property
    def top(self) -> float:
        """The slowest on-time answer expected: on-time mean plus 3 deviations."""
        return self.base_mean + 3.0 * self.base_std

    def retransmissions(self, delay: float) -> int:
        """How many retransmissions in a row ``delay`` is consistent with (0 for on time)."""
        return _retransmissions(delay, self.top, self.rto, self.late_above)

    def retransmissions_allowed(self, target: float) -> int:
        """``k``: retransmissions in a row the tail allows for (see the class docstring)."""
        return self._retransmissions_allowed(target, self.top, self.rto)

    def tail_allowance(self, target: float) -> float:
        """``top + (2**k - 1) * rto``: on time, or ``k`` retransmissions late."""
        base = self.base_mean
        top, rto = base + 3.0 * self.base_std, base + self.rto_min  # as .top and .rto, once
        retries = self._retransmissions_allowed(target, top, rto)
        return top + ((1 << retries) - 1) * rto

    def _retransmissions_allowed(self, target: float, top: float, rto: float) -> int:
        late_above = self.late_above
        clean_after = self._clean_after
        if clean_after is not None and self._count == self._base_count >= clean_after:
            wanted = 1  # a clean window: no late answer in at least clean_after
        else:
            share = self.late_share
            wanted = max(1, math.ceil(math.log(target) / math.log(share) - 1e-9) - 1)
        recent = _retransmissions(self.recent_maximum, top, rto, late_above)
        wanted = max(wanted, recent + 1)
        return min(wanted, _retransmissions(self.maximum, top, rto, late_above) + self._extra)

    def allowance(self, z: float, min_std: float, target: float | None) -> float:
        """The larger of the normal allowance and (unless ``target`` is None) the tail's."""
        count, total = self._count, self._sum
        std = _std(count, total, self._sum_sq)
        normal = (total / count if count else 0.0) + z * (std if std > min_std else min_std)
        if target is None:
            return normal
        tail = self.tail_allowance(target)
        return tail if tail > normal else normal


def _retransmissions(delay: float, top: float, rto: float, late_above: float) -> int:
    """Retransmissions in a row ``delay`` is consistent with, given the slowest on-time
    answer ``top``, the kernel's ``rto`` and the lateness margin ``late_above``: 0 for an
    answer on time by either bound. An answer a hair above ``top`` is jitter, not a
    retransmission: one comes at least an RTO late, as :meth:`ResponseEstimator.add`
    judges lateness."""
    if delay <= top or delay <= late_above:
        return 0
    return max(1, math.ceil(math.log2((delay - top) / rto + 1.0) - 1e-9))


def _std(count: int, total: float, total_sq: float) -> float:
    if count < 2:
        return 0.0
    mean = total / count
    return math.sqrt(max(0.0, total_sq / count - mean * mean))
