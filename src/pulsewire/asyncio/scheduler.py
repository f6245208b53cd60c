"""One loop-wide deadline scheduler: deadlines sorted into ticks, and a single timer.

At 10,000 connections a timer or task per connection per heartbeat costs more than the
heartbeats themselves. Instead every connection registers its next deadline here, and one
``loop.call_at`` handle is armed at the earliest tick that holds one.

Ticks: a deadline is rounded *up* to the next multiple of ``TICK`` (1/128 s, ~7.8 ms) and
the target joins that tick's :class:`Tick`. A min-heap holds only the distinct tick
numbers, so its cost is per tick, not per connection, and a fire empties whole ticks.
Rounding up means a deadline never fires early and at most one tick late. A tick is a dict
keyed by its targets (which hash by identity), so moving a target to another tick, later or
earlier, is a delete and an insert: :meth:`DeadlineScheduler.schedule` registers every
deadline exactly as the connection reports it, and a fire only ever meets targets whose
deadline has come. An emptied tick stays in the heap and fires as a no-op.

Clock resolution: a loop may run a timer slightly before its time (asyncio by up to its
clock resolution, uvloop by up to a millisecond). A tick whose end is that close is fired,
and its targets are told the tick's end as ``now``, so a session never sees a deadline it
must act on as not yet due (and a driver never spins waiting for the clock to tick). The
clock never goes back on a time it has handed out: until the loop's clock catches up with
such a tick's end, :meth:`DeadlineScheduler.time` reads the tick's end (a PONG that comes
back within that millisecond must not look older than its PING).

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
import random
import time
import weakref
from collections.abc import Callable
from typing import Protocol

from pulsewire import logevents
from pulsewire._log import get_logger

__all__ = ["DeadlineScheduler", "Scheduled", "Tick", "scheduler_for"]

_log = get_logger()


class Scheduled(Protocol):
    """What the scheduler needs of a connection."""

    #: The tick this target is registered in (None: not registered); owned by the scheduler.
    scheduled_in: Tick | None

    def on_deadline(self, now: float) -> None:
        """The registered deadline has come (``now`` is no earlier than it): act, and
        register the next deadline with :meth:`DeadlineScheduler.schedule`."""


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
    #: A timer may run this much early (uvloop's clock ticks in milliseconds).
    CLOCK_RESOLUTION = 1e-3
    #: A timer this late means the local loop was blocked: time beyond it is not counted.
    STALL_THRESHOLD = 0.1

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # asyncio's own loops read time.monotonic() through a Python method: skip the call.
        self._clock: Callable[[], float] = (
            time.monotonic
            if getattr(type(loop), "time", None) is asyncio.BaseEventLoop.time
            else loop.time
        )
        self._per_second = 1 / self.TICK
        self._by_number: dict[int, Tick] = {}
        self._numbers: list[int] = []  # heap of the keys of _by_number
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = math.inf  # loop time at which the timer is armed
        self._stall_from = math.inf  # loop time after which that timer counts as stalled
        self._stall_counted_until = -math.inf
        self._handed_out = -math.inf  # the latest tick end given to targets as ``now``
        #: Draws every session's ping jitter: one generator for the loop, not one each.
        self.rng = random.Random()
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
        now = self._clock()
        if now > self._stall_from:
            self._count_stall(now)
        now -= self.stalled
        return now if now > self._handed_out else self._handed_out

    def schedule(self, target: Scheduled, deadline: float | None) -> None:
        """Fire ``target.on_deadline`` at ``deadline`` (rounded up to the tick), replacing
        any deadline it had; ``None`` cancels."""
        old = target.scheduled_in
        if deadline is None:
            if old is not None:
                del old[target]
                target.scheduled_in = None
            return
        number = math.ceil(deadline * self._per_second)
        if old is not None:
            if old.number == number:
                return
            del old[target]
        tick = self._by_number.get(number)
        if tick is None:
            tick = self._by_number[number] = Tick(number)
            heapq.heappush(self._numbers, number)
            if number * self.TICK + self.stalled < self._armed_at:
                self._arm(number)
        tick[target] = None
        target.scheduled_in = tick

    def cancel(self, target: Scheduled) -> None:
        """Forget ``target``: it does not fire until it is scheduled again."""
        self.schedule(target, None)

    # ------------------------------------------------------------------ internals

    def _count_stall(self, now: float) -> None:
        stall_from = self._stall_from
        counted = self._stall_counted_until
        start = stall_from if stall_from > counted else counted
        if now > start:
            if start == stall_from:
                self.stalls += 1
            self.stalled += now - start
            self._stall_counted_until = now

    def _arm(self, number: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = when = number * self.TICK + self.stalled
        self._stall_from = when + self.STALL_THRESHOLD
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        stalled_before = self.stalled
        armed_at = self._armed_at
        now = self.time()
        self._armed_at = self._stall_from = math.inf
        if self.stalled > stalled_before:
            _log.warning(
                logevents.SCHEDULER_LATE,
                lateness=round(self._loop.time() - armed_at, 4),
                not_counted=round(self.stalled - stalled_before, 4),
            )
        last = math.floor((now + self.CLOCK_RESOLUTION) * self._per_second)
        numbers, by_number = self._numbers, self._by_number
        first: int | None = None
        fired = 0
        while numbers and numbers[0] <= last:
            tick = by_number.pop(heapq.heappop(numbers))
            if not tick:
                continue
            if first is None:
                first = tick.number
            tick_end = tick.number * self.TICK
            fire_at = now
            if tick_end > now:  # the loop ran us early: act at the deadline, and stay there
                fire_at = self._handed_out = tick_end
            # popitem, not iteration: a fire may cancel or move other targets of this tick.
            while tick:
                target = tick.popitem()[0]
                target.scheduled_in = None
                fired += 1
                try:
                    target.on_deadline(fire_at)
                except Exception:
                    # One broken connection must not stop the deadlines of all the others.
                    _log.exception(logevents.HANDLER_ERROR, where="on_deadline")
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
