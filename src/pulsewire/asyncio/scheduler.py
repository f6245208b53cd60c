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
monotonic clock *minus the time the loop was stalled*. A stall is a stretch in which the
loop ran nothing at all: no read, no timer, nothing that asked this clock the time (a long
GC pause, a blocking call, one callback that ran for seconds, the process stopped or
starved of CPU). Every read and every fire asks the clock, so the scheduler knows when
the loop last showed signs of activity. When the armed timer is overdue by more than
``STALL_THRESHOLD``, the part of the silence since the latest activity beyond the threshold
(and beyond the timer's own threshold) is added to ``stalled``, and the clock given to
every session stands still for it. A peer is never blamed for our own stall: after it,
every overdue connection gets its ping out and a fresh chance to answer, while a truly
dead peer is still convicted after ``timeout`` plus the stall. Reads that arrive after a
stall are processed before timers (asyncio runs I/O callbacks first), and they see the
same compensated clock, so evidence and deadlines never disagree.

An *overloaded* loop is not stalled: it keeps running short callbacks (reads go on being
processed, each asking the time), only there are too many of them and the timer fires
late. That lateness is not compensated: the clock keeps real time, so abuse limits (the
token bucket on pings), handshake deadlines and frame deadlines go on working at their
real rates, and the peers that overload us are closed by them first. Each late fire is
counted (``overloaded``, ``max_overload``) and logged as ``scheduler.overloaded``, and each
stall as ``scheduler.late``, at most once per ``LOG_INTERVAL`` each, with how many more
there were.
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
from pulsewire._log import Throttle, get_logger

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
    #: A timer this late, with nothing run for this long, means the loop was blocked: time
    #: beyond it is not counted. A timer this late while the loop ran is overload.
    STALL_THRESHOLD = 0.1
    #: ``scheduler.late`` and ``scheduler.overloaded`` are logged at most this often, s.
    LOG_INTERVAL = 10.0

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
        self._seen = -math.inf  # loop time of the latest clock read: the latest activity
        self._handed_out = -math.inf  # the latest tick end given to targets as ``now``
        self._late_log = Throttle(self.LOG_INTERVAL, clock=self._clock)
        self._overload_log = Throttle(self.LOG_INTERVAL, clock=self._clock)
        #: Draws every session's ping jitter: one generator for the loop, not one each.
        self.rng = random.Random()
        #: Seconds of loop stall subtracted from the clock so far.
        self.stalled = 0.0
        self.stalls = 0
        #: Fires later than ``STALL_THRESHOLD`` while the loop kept running (overload), and
        #: the largest such lateness, seconds: not compensated.
        self.overloaded = 0
        self.max_overload = 0.0
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
        """The loop's clock, less the time the loop was stalled (see the module docstring).

        Every call is also a sign of activity: the loop is running callbacks."""
        now = self._clock()
        if now > self._stall_from:
            self._count_stall(now)
        self._seen = now
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
        """The timer is overdue: count what of the silence since the loop last ran is a
        stall (beyond the threshold after both the latest activity and the deadline)."""
        start = self._seen + self.STALL_THRESHOLD
        if self._stall_from > start:
            start = self._stall_from
        if now > start:
            self.stalls += 1
            self.stalled += now - start

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
        late = self._seen - armed_at  # on the loop's own clock
        if late > self.STALL_THRESHOLD:
            self._report_late(late, self.stalled - stalled_before)
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

    def _report_late(self, late: float, not_counted: float) -> None:
        """Log a late fire: a stall (compensated) or overload (not), at a bounded rate."""
        if not_counted > 0:
            held = self._late_log.allow()
            if held is not None:
                _log.warning(
                    logevents.SCHEDULER_LATE,
                    lateness=round(late, 4),
                    not_counted=round(not_counted, 4),
                    held_back=held,
                    why=f"this event loop was blocked for {late:.2f} s (a blocking call, a "
                    f"long GC pause, or the process was stopped); {not_counted:.2f} s of it "
                    "is not counted as silence of any peer",
                )
        # A stall is compensated beyond the threshold: what is left of the lateness past
        # that allowance is the time the loop was too busy to fire.
        overload = late - not_counted - self.STALL_THRESHOLD if not_counted > 0 else late
        if overload > self.STALL_THRESHOLD:
            self.overloaded += 1
            if overload > self.max_overload:
                self.max_overload = overload
            held = self._overload_log.allow()
            if held is not None:
                _log.warning(
                    logevents.SCHEDULER_OVERLOADED,
                    lateness=round(overload, 4),
                    held_back=held,
                    max_lateness=round(self.max_overload, 4),
                )


_schedulers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DeadlineScheduler] = (
    weakref.WeakKeyDictionary()
)


def scheduler_for(loop: asyncio.AbstractEventLoop) -> DeadlineScheduler:
    """The loop's one scheduler, created on first use."""
    scheduler = _schedulers.get(loop)
    if scheduler is None:
        scheduler = _schedulers[loop] = DeadlineScheduler(loop)
    return scheduler
