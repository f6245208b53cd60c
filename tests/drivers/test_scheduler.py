"""The loop-wide deadline scheduler, on a hand-driven clock (no real timers, no sleeps)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import structlog.testing

from pulsewire import logevents
from pulsewire.asyncio.scheduler import DeadlineScheduler, Tick

TICK = DeadlineScheduler.TICK


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """Just what the scheduler uses of a loop: ``time`` and ``call_at``."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(when, callback)
        self.timers.append(timer)
        return timer

    def armed(self) -> FakeTimer | None:
        live = [timer for timer in self.timers if not timer.cancelled]
        assert len(live) <= 1, "the scheduler keeps one timer armed, not one per target"
        return live[0] if live else None

    def run_until(self, until: float) -> None:
        """Fire the armed timer, on time, until none is due before ``until``."""
        while (timer := self.armed()) is not None and timer.when <= until:
            self.timers.remove(timer)
            self.now = max(self.now, timer.when)
            timer.callback()
        self.now = max(self.now, until)


class Target:
    def __init__(self, name: str, log: list[tuple[str, float]]) -> None:
        self.name = name
        self.scheduled_in: Tick | None = None
        self.log = log

    def on_deadline(self, now: float) -> None:
        self.log.append((self.name, now))


@pytest.fixture
def setup() -> tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]]:
    loop = FakeLoop()
    return loop, DeadlineScheduler(loop), []  # type: ignore[arg-type]


def test_targets_fire_in_deadline_order_never_early_and_at_most_a_tick_late(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    deadlines = {"a": 0.3001, "b": 0.1, "c": 0.25, "d": 1.0}
    targets = {name: Target(name, log) for name in deadlines}
    for name, deadline in deadlines.items():
        scheduler.schedule(targets[name], deadline)
    loop.run_until(2.0)
    assert [name for name, _ in log] == ["b", "c", "a", "d"]
    for name, fired in log:
        assert deadlines[name] <= fired <= deadlines[name] + TICK


def test_targets_due_in_the_same_tick_share_one_timer(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    for index in range(100):
        scheduler.schedule(Target(str(index), log), 0.5 + TICK / 10 + index * TICK / 200)
    loop.run_until(1.0)
    assert len(log) == 100
    assert len(loop.timers) == 0
    assert len({now for _, now in log}) == 1


def test_a_later_deadline_replaces_the_registered_one(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    target = Target("t", log)
    scheduler.schedule(target, 0.5)
    scheduler.schedule(target, 0.9)  # evidence moved it later: nothing fires at 0.5
    loop.run_until(2.0)
    assert len(log) == 1
    assert log[0][1] == pytest.approx(0.9, abs=TICK)


def test_a_timer_run_early_by_the_clock_resolution_fires_at_the_deadline(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    scheduler.schedule(Target("t", log), 0.5)  # a whole number of ticks
    timer = loop.armed()
    assert timer is not None
    loop.timers.remove(timer)
    loop.now = 0.5 - scheduler.CLOCK_RESOLUTION / 2  # uvloop rounds its clock to the ms
    timer.callback()
    # Fired, and told the deadline itself, so the target never sees its deadline as not
    # yet due (which would make a driver spin until the clock ticks).
    assert log == [("t", 0.5)]
    assert loop.armed() is None
    # And the clock never goes back on it: a PONG read before the loop's clock catches up
    # must not look older than the PING sent "at 0.5".
    assert scheduler.time() == 0.5
    loop.now = 0.6
    assert scheduler.time() == 0.6


def test_an_earlier_deadline_supersedes_the_registered_one(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    target = Target("t", log)
    scheduler.schedule(target, 5.0)
    scheduler.schedule(target, 0.2)
    loop.run_until(10.0)
    assert len(log) == 1
    assert log[0][1] == pytest.approx(0.2, abs=TICK)


def test_a_cancelled_target_never_fires(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    kept, cancelled = Target("kept", log), Target("cancelled", log)
    scheduler.schedule(kept, 0.3)
    scheduler.schedule(cancelled, 0.2)
    scheduler.cancel(cancelled)
    loop.run_until(1.0)
    assert log == [("kept", log[0][1])]


def test_one_failing_target_does_not_stop_the_others(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup

    class Broken(Target):
        def on_deadline(self, now: float) -> None:
            raise RuntimeError("broken handler")

    scheduler.schedule(Broken("broken", log), 0.1)
    scheduler.schedule(Target("fine", log), 0.1)
    loop.run_until(1.0)
    assert [name for name, _ in log] == ["fine"]


def test_targets_may_register_again_from_their_own_fire(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup

    class Periodic(Target):
        def on_deadline(self, now: float) -> None:
            super().on_deadline(now)
            scheduler.schedule(self, now + 0.25)

    scheduler.schedule(Periodic("p", log), 0.25)
    loop.run_until(2.6)
    assert len(log) == 10
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(log)]
    assert all(0.25 <= gap <= 0.25 + TICK for gap in gaps)


def test_lateness_is_measured_from_the_start_of_the_tick_so_rounding_counts(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    reported: list[float] = []
    scheduler.on_fire = reported.append
    scheduler.schedule(Target("t", log), 0.5 + TICK / 4)  # rounded up by 3/4 of a tick
    loop.run_until(1.0)
    # Fired on time at the end of its tick: one whole tick from the earliest deadline the
    # tick could hold (an upper bound on the lateness of the deadline itself).
    assert reported == [pytest.approx(TICK)]
    assert scheduler.max_lateness == pytest.approx(TICK)


def test_moving_a_target_leaves_nothing_behind_to_fire(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    target = Target("t", log)
    for step in range(50):  # a heartbeat answered 50 times: moved later each time
        scheduler.schedule(target, 0.5 + step * 0.1)
        assert len(scheduler) == 1
    loop.run_until(0.5 + 49 * 0.1 - TICK)
    assert log == []
    loop.run_until(10.0)
    assert [name for name, _ in log] == ["t"]


def test_a_fire_may_cancel_another_target_of_the_same_tick(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    victims = [Target(f"v{index}", log) for index in range(5)]

    class Closer(Target):
        def on_deadline(self, now: float) -> None:
            super().on_deadline(now)
            for victim in victims:
                scheduler.cancel(victim)

    for victim in victims:
        scheduler.schedule(victim, 0.5)
    scheduler.schedule(Closer("closer", log), 0.5)
    loop.run_until(1.0)
    # The closer fired first (most recently added) or after some victims; no victim fires
    # after it, and nothing is left registered.
    names = [name for name, _ in log]
    assert "closer" in names
    assert names[names.index("closer") + 1 :] == []
    assert len(scheduler) == 0


def test_a_stalled_loop_is_not_counted_against_the_deadlines(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    scheduler.schedule(Target("t", log), 1.0)  # a whole number of ticks: armed at 1.0
    timer = loop.armed()
    assert timer is not None
    loop.now = 3.0  # the loop was blocked for two seconds past the timer
    loop.timers.remove(timer)
    timer.callback()
    assert scheduler.stalls == 1
    # Beyond the threshold, the stall is not counted: the target sees a clock that is
    # only the threshold late.
    assert scheduler.stalled == pytest.approx(2.0 - scheduler.STALL_THRESHOLD, abs=1e-9)
    assert log[0][1] == pytest.approx(1.0 + scheduler.STALL_THRESHOLD, abs=1e-9)


def test_a_stall_is_logged_with_what_it_means(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    scheduler.schedule(Target("t", log), 1.0)
    timer = loop.armed()
    assert timer is not None
    loop.now = 4.5  # blocked for 3.5 s past the timer, as a process stopped and resumed
    loop.timers.remove(timer)
    with structlog.testing.capture_logs() as logs:
        timer.callback()
    (late,) = [entry for entry in logs if entry["event"] == logevents.SCHEDULER_LATE]
    assert late["log_level"] == "warning"
    assert late["lateness"] == pytest.approx(3.5)
    assert late["not_counted"] == pytest.approx(3.5 - scheduler.STALL_THRESHOLD)
    assert late["why"] == (
        "this event loop was blocked for 3.50 s (a blocking call, a long GC pause, or the "
        "process was stopped); 3.40 s of it is not counted as silence of any peer"
    )


def busy_until(loop: FakeLoop, scheduler: DeadlineScheduler, until: float) -> None:
    """The loop runs short callbacks (reads) every 10 ms, each asking the time, while the
    armed timer waits its turn: an overloaded loop, not a blocked one."""
    while loop.now + 0.01 <= until:
        loop.now += 0.01
        scheduler.time()


def fire_now(loop: FakeLoop) -> None:
    timer = loop.armed()
    assert timer is not None
    loop.timers.remove(timer)
    timer.callback()


def test_an_overloaded_loop_keeps_real_time(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    scheduler.schedule(Target("t", log), 1.0)
    busy_until(loop, scheduler, 3.0)  # reads kept coming; the timer ran two seconds late
    fire_now(loop)
    # Not a stall: nothing is compensated, the target sees the real time, and the
    # lateness is counted as overload.
    assert (scheduler.stalled, scheduler.stalls) == (0.0, 0)
    assert log == [("t", pytest.approx(3.0))]
    assert scheduler.overloaded == 1
    assert scheduler.max_overload == pytest.approx(2.0)


def test_only_the_stretch_in_which_nothing_ran_is_a_stall(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    scheduler.schedule(Target("t", log), 1.0)
    busy_until(loop, scheduler, 2.0)  # overloaded from 1.0 to 2.0 ...
    loop.now = 4.0  # ... then one callback blocked the loop for two seconds
    fire_now(loop)
    # The silence from 2.0 to 4.0, less the threshold, is not counted; the lateness of
    # the busy second is.
    assert scheduler.stalled == pytest.approx(2.0 - scheduler.STALL_THRESHOLD, abs=0.011)
    assert scheduler.stalls == 1
    assert scheduler.max_overload == pytest.approx(1.0, abs=0.011)


def test_activity_before_the_deadline_does_not_shorten_a_stall(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    scheduler.schedule(Target("t", log), 1.0)
    busy_until(loop, scheduler, 0.95)  # the last read before the block
    loop.now = 3.0
    fire_now(loop)
    assert scheduler.stalled == pytest.approx(2.0 - scheduler.STALL_THRESHOLD)
    assert scheduler.overloaded == 0


def test_late_fires_are_logged_at_a_bounded_rate(
    setup: tuple[FakeLoop, DeadlineScheduler, list[tuple[str, float]]],
) -> None:
    loop, scheduler, log = setup
    with structlog.testing.capture_logs() as logs:
        for second in range(20):  # twenty seconds, each with a stall and an overload
            loop.now = float(second)
            scheduler.schedule(Target("stall", log), scheduler.time() + 0.05)
            loop.now += 0.35
            fire_now(loop)
            scheduler.schedule(Target("busy", log), scheduler.time() + 0.02)
            busy_until(loop, scheduler, second + 0.95)
            fire_now(loop)
    assert (scheduler.stalls, scheduler.overloaded) == (20, 20)
    late = [e for e in logs if e["event"] == logevents.SCHEDULER_LATE]
    overloaded = [e for e in logs if e["event"] == logevents.SCHEDULER_OVERLOADED]
    # One line at the first, one ten seconds later saying how many were held back.
    assert [e["held_back"] for e in late] == [0, 9]
    assert [e["held_back"] for e in overloaded] == [0, 9]
    assert overloaded[0]["lateness"] == pytest.approx(0.58, abs=0.02)
