"""One loop-wide deadline scheduler: deadlines sorted into ticks, and a single timer.

At 10,000 connections a timer or task per connection per heartbeat costs more than the
heartbeats themselves. Instead every connection registers its next deadline here, and one
``loop.call_at`` handle is armed at the earliest tick that holds one.

Ticks: a deadline is rounded *up* to the next multiple of ``TICK`` (1/128 s, ~7.8 ms) and
the target joins that tick's :class:`Tick`. A min-heap holds only the distinct tick
numbers, so its cost is per tick, not per connection (a heap of 10,000 individual deadlines
spent ~12 % of an idle server's CPU in ``heappop`` alone), and a fire empties whole ticks.
Rounding up means a deadline never fires early and at most one tick late.

A tick is a dict keyed by its targets, which hash by identity: moving a target to another
tick is a delete and an insert that never read the target's own memory, and a fire meets
only live entries. (With a list per tick, every move left a stale entry behind that the
fire had to read back from the target to skip it: at 10,000 connections that is a cache
miss per heartbeat, which costs more than the rest of the bookkeeping.)

Rescheduling is lazy: when evidence arrives the connection's deadline moves *later*, and
nothing is touched. The registered tick fires, the session finds nothing due, and the
connection registers its new deadline: one move per interval per connection, however busy
it is. :meth:`DeadlineScheduler.schedule` therefore only ever moves a target earlier;
:meth:`DeadlineScheduler.reschedule` moves it either way, for the idle connection's
heartbeat, whose deadline moves once an interval: a move now instead of a fire later.

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
import time
import weakref
from collections.abc import Callable
from typing import Protocol

import structlog

from pulsewire import logevents
from pulsewire.core.liveness import EPSILON

__all__ = ["DeadlineScheduler", "Scheduled", "Tick", "scheduler_for"]

_log = structlog.get_logger("pulsewire")
_ceil = math.ceil


class Scheduled(Protocol):
    """What the scheduler needs of a connection."""

    #: The tick this target is registered in (None: not registered); owned by the scheduler.
    scheduled_in: Tick | None

    def on_deadline(self, now: float) -> float | None:
        """The registered deadline has passed: act, then return the next deadline for the
        scheduler to register, or None when the target registered one itself (or has none).
        Returning it saves the idle heartbeat a call: most fires end by registering."""


class Tick(dict[Scheduled, None]):
    """The targets due by the end of tick ``number``, in a dict so that a move is O(1)."""

    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number


class DeadlineScheduler:
    """Fires each registered target at its deadline; one timer for the whole loop."""

    #: Deadlines are rounded up to a multiple of this (a power of two: exact in floating point).
    TICK = 1 / 128
    #: A timer this late means the local loop was blocked: time beyond it is not counted.
    STALL_THRESHOLD = 0.1

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # asyncio's own loops read time.monotonic() through a Python method: skip the call.
        #: The loop's raw clock. ``clock``, ``stall_from`` and ``stalled`` are public so
        #: that a read (the protocol's hot path) can inline :meth:`time`.
        self.clock: Callable[[], float] = (
            time.monotonic
            if getattr(type(loop), "time", None) is asyncio.BaseEventLoop.time
            else loop.time
        )
        self._per_second = 1 / self.TICK
        self._by_number: dict[int, Tick] = {}
        self._numbers: list[int] = []  # heap of the keys of _by_number
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = math.inf  # loop time at which the timer is armed
        #: Loop time after which the armed timer is overdue enough to count as a stall.
        self.stall_from = math.inf  # _armed_at + STALL_THRESHOLD
        self._stall_counted_until = -math.inf
        #: Seconds of loop stall subtracted from the clock so far.
        self.stalled = 0.0
        self.stalls = 0
        self.fired = 0
        #: Largest lateness seen: from the start of the earliest tick a fire served.
        self.max_lateness = 0.0
        #: Called with each fire's lateness in seconds, measured from the start of the
        #: earliest tick it served: the earliest deadline that tick can hold, so the
        #: rounding up to the tick is included (for benchmarks and monitoring).
        self.on_fire: Callable[[float], None] | None = None

    def __len__(self) -> int:
        """Targets registered."""
        return sum(len(tick) for tick in self._by_number.values())

    def time(self) -> float:
        """The loop's clock, less the time the loop was stalled (see the module docstring)."""
        now = self.clock()
        if now > self.stall_from:
            self._count_stall(now)
        return now - self.stalled

    def _count_stall(self, now: float) -> None:
        stall_from = self.stall_from
        start = stall_from if stall_from > self._stall_counted_until else self._stall_counted_until
        if now > start:
            if start == stall_from:
                self.stalls += 1
            self.stalled += now - start
            self._stall_counted_until = now

    def schedule(self, target: Scheduled, deadline: float | None) -> None:
        """Make sure ``target.on_deadline`` runs no later than ``deadline`` (rounded up)."""
        if deadline is None:
            return
        number = _ceil(deadline * self._per_second)
        tick = target.scheduled_in
        if tick is None or number < tick.number:
            self._move(target, tick, number)

    def reschedule(self, target: Scheduled, deadline: float) -> None:
        """Move ``target``'s deadline to ``deadline``, later or earlier.

        :meth:`schedule` only ever moves a deadline earlier (see the module docstring);
        this is for a deadline known to move once an interval (a heartbeat answered): one
        move now instead of a lazy fire later.
        """
        number = _ceil(deadline * self._per_second)
        old = target.scheduled_in
        if old is not None:
            if number == old.number:
                return
            del old[target]
        # _move, inlined for the tick that exists (every idle heartbeat comes through here).
        tick = self._by_number.get(number)
        if tick is None:
            self._move(target, None, number)
            return
        tick[target] = None
        target.scheduled_in = tick

    def cancel(self, target: Scheduled) -> None:
        """Forget ``target``: it does not fire until it is scheduled again."""
        tick = target.scheduled_in
        if tick is not None:
            del tick[target]
            target.scheduled_in = None

    def _move(self, target: Scheduled, old: Tick | None, number: int) -> None:
        if old is not None:
            del old[target]  # an emptied tick stays in the heap and fires as a no-op
        tick = self._by_number.get(number)
        if tick is None:
            tick = self._by_number[number] = Tick(number)
            heapq.heappush(self._numbers, number)
            if number * self.TICK + self.stalled < self._armed_at:
                self._arm(number)
        tick[target] = None
        target.scheduled_in = tick

    def _arm(self, number: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = when = number * self.TICK + self.stalled
        self.stall_from = when + self.STALL_THRESHOLD
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        stalled_before = self.stalled
        armed_at = self._armed_at
        now = self.time()
        self._armed_at = self.stall_from = math.inf
        if self.stalled > stalled_before:
            _log.warning(
                logevents.SCHEDULER_LATE,
                lateness=round(self._loop.time() - armed_at, 4),
                not_counted=round(self.stalled - stalled_before, 4),
            )
        last = math.floor((now + EPSILON) * self._per_second)  # the loop may fire a bit early
        numbers = self._numbers
        by_number = self._by_number
        per_second = self._per_second
        first: int | None = None
        fired = 0
        while numbers and numbers[0] <= last:
            tick = by_number.pop(heapq.heappop(numbers))
            if tick and first is None:
                first = tick.number
            # popitem, not iteration: a fire may cancel or move other targets of this tick.
            while tick:
                target = tick.popitem()[0]
                target.scheduled_in = None
                fired += 1
                try:
                    deadline = target.on_deadline(now)
                except Exception:
                    # One broken connection must not stop the deadlines of all the others.
                    _log.exception(logevents.HANDLER_ERROR, where="on_deadline")
                    continue
                if deadline is not None:
                    # reschedule(target, deadline), inlined for a target known unregistered.
                    number = _ceil(deadline * per_second)
                    later = by_number.get(number)
                    if later is None:
                        self._move(target, None, number)
                    else:
                        later[target] = None
                        target.scheduled_in = later
        self.fired += fired
        if first is not None:
            # On the loop's clock: from the earliest deadline the first tick could hold.
            lateness = now - (first - 1) * self.TICK + self.stalled - stalled_before
            if lateness > self.max_lateness:
                self.max_lateness = lateness
            if self.on_fire is not None:
                self.on_fire(lateness)
        if numbers:
            self._arm(numbers[0])


_schedulers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DeadlineScheduler] = (
    weakref.WeakKeyDictionary()
)


def scheduler_for(loop: asyncio.AbstractEventLoop) -> DeadlineScheduler:
    """The loop's one scheduler, created on first use."""
    scheduler = _schedulers.get(loop)
    if scheduler is None:
        scheduler = _schedulers[loop] = DeadlineScheduler(loop)
    return scheduler
