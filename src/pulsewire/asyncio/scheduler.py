"""One loop-wide deadline scheduler: deadlines sorted into ticks, and a single timer.

At 10,000 connections a timer or task per connection per heartbeat costs more than the
heartbeats themselves. Instead every connection registers its next deadline here, and one
``loop.call_at`` handle is armed at the earliest tick that holds one.

Ticks: a deadline is rounded *up* to the next multiple of ``TICK`` (1/256 s, ~3.9 ms) and
appended to that tick's list. A min-heap holds only the distinct tick numbers, so its cost
is per tick, not per connection: registering is a dict lookup and a list append, and a
fire walks whole lists. (A heap of 10,000 individual deadlines spent ~12 % of an idle
server's CPU in ``heappop`` alone.) Rounding up means a deadline never fires early and at
most one tick late.

Rescheduling is lazy: when evidence arrives the connection's deadline moves *later*, and
nothing is touched. The old, earlier entry fires, the session finds nothing due, and the
connection registers its new deadline: one append per interval per connection, however
busy it is. Only a deadline moving *earlier* (a close timeout, say) adds a new entry; the
superseded one is recognised as stale when its tick comes (its tick is no longer the one
``scheduled_at`` rounds to) and skipped. The one exception is the idle connection's
heartbeat, which moves the deadline once an interval: :meth:`DeadlineScheduler.reschedule`
moves it at once, an append instead of a fire.

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
import math
import weakref
from collections.abc import Callable
from typing import Protocol

import structlog

from pulsewire import logevents
from pulsewire.core.liveness import EPSILON

__all__ = ["DeadlineScheduler", "Scheduled", "scheduler_for"]

_log = structlog.get_logger("pulsewire")
_ceil = math.ceil
_INF = math.inf


class Scheduled(Protocol):
    """What the scheduler needs of a connection."""

    #: Deadline of this target's live entry (``inf`` when none); owned by the scheduler.
    scheduled_at: float

    def on_deadline(self, now: float) -> None:
        """The registered deadline has passed: act, then register the next one."""


class DeadlineScheduler:
    """Fires each registered target at its deadline; one timer for the whole loop."""

    #: Deadlines are rounded up to a multiple of this (a power of two: exact in floating point).
    TICK = 1 / 128
    #: A timer this late means the local loop was blocked: time beyond it is not counted.
    STALL_THRESHOLD = 0.1

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._per_second = 1 / self.TICK
        self._buckets: dict[int, list[Scheduled]] = {}  # tick -> targets due at its end
        self._ticks: list[int] = []  # heap of the keys of _buckets
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = math.inf  # loop time at which the timer is armed
        self._stall_counted_until = -math.inf
        #: Seconds of loop stall subtracted from the clock so far.
        self.stalled = 0.0
        self.stalls = 0
        self.fired = 0
        #: Largest lateness seen, from the deadline (rounding included) to the fire.
        self.max_lateness = 0.0
        #: Called with each fire's lateness in seconds: from the earliest deadline it serves
        #: (its rounding up to a tick included) to the fire (for benchmarks and monitoring).
        self.on_fire: Callable[[float], None] | None = None

    def __len__(self) -> int:
        """Entries held, stale ones included."""
        return sum(len(bucket) for bucket in self._buckets.values())

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
        """Make sure ``target.on_deadline`` runs no later than ``deadline`` (rounded up)."""
        if deadline is not None and deadline < target.scheduled_at:
            self.reschedule(target, deadline)

    def reschedule(self, target: Scheduled, deadline: float) -> None:
        """Move ``target``'s deadline to ``deadline``, later or earlier.

        :meth:`schedule` only ever moves a deadline earlier (see the module docstring);
        this is for a deadline known to move once an interval (a heartbeat answered): one
        append now instead of a lazy fire later. The old entry is left behind, stale.
        """
        if deadline == target.scheduled_at:
            return
        target.scheduled_at = deadline
        tick = _ceil(deadline * self._per_second)
        bucket = self._buckets.get(tick)
        if bucket is not None:
            bucket.append(target)
            return
        self._buckets[tick] = [target]
        heapq.heappush(self._ticks, tick)
        if tick * self.TICK + self.stalled < self._armed_at:
            self._arm(tick)

    def cancel(self, target: Scheduled) -> None:
        """Forget ``target``; its entries become stale and are skipped."""
        target.scheduled_at = math.inf

    def _arm(self, tick: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = when = tick * self.TICK + self.stalled
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        stalled_before = self.stalled
        armed_at = self._armed_at
        now = self.time()
        self._armed_at = math.inf
        if self.stalled > stalled_before:
            _log.warning(
                logevents.SCHEDULER_LATE,
                lateness=round(self._loop.time() - armed_at, 4),
                not_counted=round(self.stalled - stalled_before, 4),
            )
        per_second = self._per_second
        last_tick = math.floor((now + EPSILON) * per_second)  # the loop may fire a bit early
        ticks = self._ticks
        buckets = self._buckets
        earliest = _INF
        fired = 0
        while ticks and ticks[0] <= last_tick:
            tick = heapq.heappop(ticks)
            for target in buckets.pop(tick):
                deadline = target.scheduled_at
                if deadline == _INF or _ceil(deadline * per_second) != tick:
                    continue  # superseded by an earlier entry, or cancelled
                target.scheduled_at = _INF
                fired += 1
                if deadline < earliest:
                    earliest = deadline
                try:
                    target.on_deadline(now)
                except Exception:
                    # One broken connection must not stop the deadlines of all the others.
                    _log.exception(logevents.HANDLER_ERROR, where="on_deadline")
        self.fired += fired
        if fired:
            lateness = now - earliest + self.stalled - stalled_before  # on the loop's clock
            if lateness > self.max_lateness:
                self.max_lateness = lateness
            if self.on_fire is not None:
                self.on_fire(lateness)
        if ticks:
            self._arm(ticks[0])


_schedulers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DeadlineScheduler] = (
    weakref.WeakKeyDictionary()
)


def scheduler_for(loop: asyncio.AbstractEventLoop) -> DeadlineScheduler:
    """The loop's one scheduler, created on first use."""
    scheduler = _schedulers.get(loop)
    if scheduler is None:
        scheduler = _schedulers[loop] = DeadlineScheduler(loop)
    return scheduler
