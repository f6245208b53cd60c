"""Estimators fed by the liveness machinery: RTT statistics and the adaptive timeout.

Both are measured on this side's own clock only, so neither needs synchronised clocks.
"""

from __future__ import annotations

import math
from array import array
from itertools import compress
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

    **Cost.** :meth:`add` runs once per answer on every connection of an adaptive policy.
    It stores the delay and compares it with one figure kept from the last *refresh*, which
    recomputes every figure above from the window. The first refresh comes after ``warmup``
    answers (until then no answer is late). Later ones come at once after a late answer
    (so it counts before the next one: an answer slower than ``top`` but not late adds
    no retransmission to the tail), when ``clean_after`` on-time answers have come, and
    otherwise after :attr:`REFRESH_EVERY` answers (fewer while the window fills).
    :meth:`add` says when one came, so a caller recomputes what it derives only then, and
    reading a figure refreshes it first. The answers between two refreshes are therefore
    all on time, judged against the on-time mean of at most ``REFRESH_EVERY`` answers
    before: on-time answers move it, and the body's figures, by little. Recomputing from
    the window leaves no floating-point drift. The window is a ring of single-precision
    floats (a delay to about 7 significant digits) and a ring of flags, stored in place:
    an idle connection keeps about 600 bytes for it, not a float object per delay. Pure:
    no clock, no I/O.
    """

    RECENT = 5  #: answers whose slowest sets the fewest retransmissions allowed
    LATE = 0.75  #: a delay this many ``rto_min`` above the on-time mean is late
    REFRESH_EVERY = 32  #: on-time answers at most between two refreshes

    __slots__ = (
        "_base_count",
        "_base_mean",
        "_base_std",
        "_clean_after",
        "_count",
        "_decay",
        "_due",
        "_due_from",
        "_extra",
        "_late_above",
        "_late_weight",
        "_mean",
        "_next",
        "_on_time",
        "_ring",
        "_std",
        "_weight",
        "_window",
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
        warmup: int = 1,
    ) -> None:
        self._ring = array("f", bytes(4 * window))  #: the window's delays
        self._on_time = bytearray(window)  #: 1 where the delay in the same place was on time
        self._window = window  # len(self._ring), without a call on add()'s path
        self._next = 0  #: where the next delay goes; the oldest, once the window is full
        self._count = 0  #: delays in the window at the last refresh
        self._extra = extra
        self._clean_after = clean_after
        self.rto_min = rto_min
        self._decay = 1.0 - 1.0 / loss_memory
        self._late_weight = self._weight = 0.0  #: exponentially weighted late / all answers
        self._mean = self._std = self._base_mean = self._base_std = 0.0
        self._base_count = 0
        # Until the first refresh, after `warmup` delays, nothing is late: none is on time yet.
        self._late_above = math.inf
        self._due = self._due_from = warmup  #: delays until the next refresh, counted from

    def __len__(self) -> int:
        count = self._count + self._due_from - self._due
        window = self._window
        return count if count < window else window

    def add(self, delay: float) -> bool:
        """Record one response delay; return True when it refreshed the figures."""
        where, ring = self._next, self._ring
        ring[where] = delay
        delay = ring[where]  # as stored: judged as the figures will see it
        self._next = (where + 1) % self._window
        due = self._due - 1
        self._due = due
        late = delay > self._late_above
        if due and not late:
            return False  # on time: the figures stand
        self._refresh(late)
        return True

    @property
    def samples(self) -> list[float]:
        """The delays in the window, oldest first."""
        ring, count, start = self._ring, len(self), self._next
        if count < self._window:
            return ring[:count].tolist()
        return ring[start:].tolist() + ring[:start].tolist()

    # ------------------------------------------------------------------ the refresh

    def _fresh(self) -> None:
        if self._due != self._due_from:
            self._refresh(False)  # only add() refreshes after a late answer

    def _refresh(self, newest_late: bool) -> None:
        """Recompute the figures; the delays since the last refresh were all on time but
        perhaps the newest."""
        new = self._due_from - self._due
        ring, flags, window, end = self._ring, self._on_time, self._window, self._next
        if new:
            start = end - new
            if start >= 0:
                flags[start:end] = b"\x01" * new
            else:  # the new delays wrap around the ring's end
                flags[start:] = b"\x01" * -start
                flags[:end] = b"\x01" * end
            flags[end - 1] = not newest_late
        count = self._count + new
        count = self._count = count if count < window else window
        delays = (ring if count == window else ring[:count]).tolist()  # boxed once
        on_time = flags.count(1, 0, count)
        late = count - on_time
        mean, std = _mean_std(delays)
        base_mean, base_std = (
            _mean_std(list(compress(delays, flags))) if late and on_time else (mean, std)
        )
        self._mean, self._std, self._base_mean, self._base_std = mean, std, base_mean, base_std
        self._base_count = on_time
        # With no on-time answer in the window, nothing is late until one is.
        late_above = base_mean + self.LATE * self.rto_min if on_time else math.inf
        self._late_above = late_above
        self._fold_late_share(new, newest_late, count, late)
        step = min(self.REFRESH_EVERY, max(count, 1))
        clean_after = self._clean_after
        if clean_after is not None and not late and count < clean_after:
            step = min(step, clean_after - count)  # the clean verdict counts at once
        self._due = self._due_from = step

    def _fold_late_share(self, new: int, newest_late: bool, count: int, late: int) -> None:
        """Weigh the ``new`` answers since the last refresh into ``r`` (only the newest may
        have been late), and restart it from the window's share if the path changed."""
        late_weight, weight = self._late_weight, self._weight
        if new:
            decay = self._decay
            faded = decay**new
            weight = weight * faded + (1.0 - faded) / (1.0 - decay)
            late_weight = late_weight * faded + newest_late
        # The path changed when the window's count of late answers is three standard errors
        # above what the long-run share predicts, or that far below half of it.
        expected = (late_weight + 0.5) / (weight + 1.0) * count
        spread = 3.0 * math.sqrt(late) if late else 0.0
        if late - spread > expected or late + spread + 1.0 < expected / 2:
            late_weight, weight = float(late), float(count)
        self._late_weight, self._weight = late_weight, weight

    # ------------------------------------------------------------------ the body

    @property
    def mean(self) -> float:
        self._fresh()
        return self._mean

    @property
    def std(self) -> float:
        self._fresh()
        return self._std

    # ------------------------------------------------------------------ the tail

    @property
    def maximum(self) -> float:
        """The slowest answer in the window (0 when empty)."""
        count = len(self)
        return max(self._ring[:count]) if count else 0.0

    @property
    def recent_maximum(self) -> float:
        """The slowest of the last :attr:`RECENT` answers (0 when empty)."""
        ring, end = self._ring, self._next or self._window  # one past the newest
        wanted = min(self.RECENT, len(self))
        if not wanted:
            return 0.0
        if end >= wanted:
            return max(ring[end - wanted : end])
        return max(max(ring[:end]), max(ring[len(ring) - (wanted - end) :]))

    @property
    def base_mean(self) -> float:
        """Mean of the on-time (not late) delays in the window; of all when none is."""
        self._fresh()
        return self._base_mean

    @property
    def base_std(self) -> float:
        self._fresh()
        return self._base_std

    @property
    def late_count(self) -> int:
        """Late delays in the window."""
        self._fresh()
        return len(self) - self._base_count

    @property
    def late_share(self) -> float:
        """``r``: the weighted share of late answers, started from half an answer."""
        self._fresh()
        return (self._late_weight + 0.5) / (self._weight + 1.0)

    @property
    def rto(self) -> float:
        """The retransmission timeout the kernel would use: on-time mean plus ``rto_min``."""
        return self.base_mean + self.rto_min

    @property
    def late_above(self) -> float:
        """Delays slower than this are late: the on-time mean plus ``LATE * rto_min``
        (infinite while no answer is on time)."""
        self._fresh()
        return self._late_above

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
        top, rto = self.top, self.rto
        retries = self._retransmissions_allowed(target, top, rto)
        return top + ((1 << retries) - 1) * rto

    def _retransmissions_allowed(self, target: float, top: float, rto: float) -> int:
        late_above = self.late_above
        clean_after = self._clean_after
        if clean_after is not None and len(self) == self._base_count >= clean_after:
            wanted = 1  # a clean window: no late answer in at least clean_after
        else:
            share = self.late_share
            wanted = max(1, math.ceil(math.log(target) / math.log(share) - 1e-9) - 1)
        recent = _retransmissions(self.recent_maximum, top, rto, late_above)
        wanted = max(wanted, recent + 1)
        extra = self._extra
        if wanted <= extra:  # within the cap, whatever the slowest answer needed
            return wanted
        return min(wanted, _retransmissions(self.maximum, top, rto, late_above) + extra)

    def allowance(self, z: float, min_std: float, target: float | None) -> float:
        """The larger of the normal allowance and (unless ``target`` is None) the tail's."""
        self._fresh()
        std = self._std
        normal = self._mean + z * (std if std > min_std else min_std)
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
    # Within a millionth of a step, the smaller count: the window keeps single precision.
    return max(1, math.ceil(math.log2((delay - top) / rto + 1.0) - 1e-6))


def _mean_std(delays: list[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation; (0, 0) for none."""
    count = len(delays)
    if count < 2:
        return (delays[0] if count else 0.0), 0.0
    mean = math.fsum(delays) / count  # exactly rounded: the same in any order
    # The distance from (mean, mean, ...): the deviations' root sum of squares, in C.
    return mean, math.dist(delays, [mean] * count) / math.sqrt(count)
