"""One loop-wide deadline scheduler: a heap of connection deadlines and a single timer.

At 10,000 connections a timer or task per connection per heartbeat costs more than the
heartbeats themselves. Instead every connection registers its next deadline here, and one
``loop.call_at`` handle is armed at the earliest.

Rescheduling is lazy: when evidence arrives the connection's deadline moves *later*, and
nothing is touched. The old, earlier entry fires, the session finds nothing due, and the
connection registers its new deadline: one heap push per interval per connection, however
busy it is. Only a deadline moving *earlier* (a close timeout, say) pushes a new entry; the
superseded one is recognised as stale when it surfaces and skipped.

Local-stall guard: the scheduler's clock, :meth:`DeadlineScheduler.time`, is the loop's
monotonic clock *minus the time the loop was stalled*. When the armed timer is overdue by
more than ``STALL_THRESHOLD`` (the loop was blocked by a long GC pause, a blocking call,
CPU starvation), the overdue time beyond the threshold is added to ``stalled`` and the
clock given to every session stands still for it. A peer is never blamed for our own
stall: after it, every overdue connection gets its ping out and a fresh chance to answer,
while a truly dead peer is still convicted after ``timeout`` plus the stall. Reads that
arrive after a stall are processed before timers (asyncio runs I/O callbacks first), and
they see the same compensated clock, so evidence and deadlines never disagree.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import weakref
from collections.abc import Callable
from typing import Protocol

import structlog

from pulsewire import logevents
from pulsewire.core.liveness import EPSILON

__all__ = ["DeadlineScheduler", "Scheduled", "scheduler_for"]

_log = structlog.get_logger("pulsewire")


class Scheduled(Protocol):
    """What the scheduler needs of a connection."""

    #: Deadline of this target's live heap entry (``inf`` when none); owned by the scheduler.
    scheduled_at: float

    def on_deadline(self, now: float) -> None:
        """The registered deadline has passed: act, then register the next one."""


class DeadlineScheduler:
    """Fires each registered target at its deadline; one timer for the whole loop."""

    #: A timer this late means the local loop was blocked: time beyond it is not counted.
    STALL_THRESHOLD = 0.1

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Scheduled]] = []
        self._tiebreak = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = math.inf  # loop time at which the timer is armed
        self._stall_counted_until = -math.inf
        #: Seconds of loop stall subtracted from the clock so far.
        self.stalled = 0.0
        self.stalls = 0
        self.fired = 0
        self.max_lateness = 0.0
        #: Called with each timer's lateness in seconds (for benchmarks and monitoring).
        self.on_fire: Callable[[float], None] | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def time(self) -> float:
        """The loop's clock, less the time the loop was stalled (see the module docstring)."""
        now = self._loop.time()
        stall_from = self._armed_at + self.STALL_THRESHOLD
        if now > stall_from:
            start = max(stall_from, self._stall_counted_until)
            if now > start:
                if start == stall_from:
                    self.stalls += 1
                self.stalled += now - start
                self._stall_counted_until = now
        return now - self.stalled

    def schedule(self, target: Scheduled, deadline: float | None) -> None:
        """Make sure ``target.on_deadline`` runs no later than ``deadline``."""
        if deadline is None or deadline >= target.scheduled_at:
            return
        target.scheduled_at = deadline
        heapq.heappush(self._heap, (deadline, next(self._tiebreak), target))
        if deadline + self.stalled < self._armed_at:
            self._arm(deadline)

    def cancel(self, target: Scheduled) -> None:
        """Forget ``target``; its heap entries become stale and are skipped."""
        target.scheduled_at = math.inf

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = when = deadline + self.stalled
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        stalled_before = self.stalled
        lateness = self._loop.time() - self._armed_at
        now = self.time()
        self._armed_at = math.inf
        if lateness > self.max_lateness:
            self.max_lateness = lateness
        if self.stalled > stalled_before:
            _log.warning(
                logevents.SCHEDULER_LATE,
                lateness=round(lateness, 4),
                not_counted=round(self.stalled - stalled_before, 4),
            )
        if self.on_fire is not None:
            self.on_fire(lateness)
        heap = self._heap
        due = now + EPSILON  # the loop may fire a timer up to one clock tick early
        while heap and heap[0][0] <= due:
            deadline, _, target = heapq.heappop(heap)
            if target.scheduled_at != deadline:
                continue  # superseded by an earlier entry, or cancelled
            target.scheduled_at = math.inf
            self.fired += 1
            try:
                target.on_deadline(now)
            except Exception:
                # One broken connection must not stop the deadlines of all the others.
                _log.exception(logevents.HANDLER_ERROR, where="on_deadline")
        if heap:
            self._arm(heap[0][0])


_schedulers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DeadlineScheduler] = (
    weakref.WeakKeyDictionary()
)


def scheduler_for(loop: asyncio.AbstractEventLoop) -> DeadlineScheduler:
    """The loop's one scheduler, created on first use."""
    scheduler = _schedulers.get(loop)
    if scheduler is None:
        scheduler = _schedulers[loop] = DeadlineScheduler(loop)
    return scheduler
