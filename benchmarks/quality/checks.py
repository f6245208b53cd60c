"""The rules the study's numbers rest on, checked on scripted cases before a smoke run.

The network model must retransmit and deliver as TCP does (a lost segment holds back the
ones behind it, the RTO doubles, a crashed host sends nothing more, a changing path is
lossy only in its degraded phase, the RTO follows Linux on each profile), and the matches
must not read noise as a result nor count a trade-off as a win. Each check is a function
whose docstring says the rule; :func:`broken_rules` runs them all and names the broken
ones (``detection_quality.py --smoke`` fails on any).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from quality.matches import Axis, fewer_deaths, judge, safety, speed
from quality.model import Crash, Direction, Link, Outcome
from quality.study import LINKS, Cell, fixed_contender


class RuleBroken(Exception):
    """What a check found instead of the rule."""


def expect(holds: bool, found: str) -> None:
    if not holds:
        raise RuleBroken(found)


class Scripted(random.Random):
    """A generator whose ``random()`` answers a script: 0.0 loses a segment, 0.99 keeps it.

    A draw beyond the script is an error: the check then made more draws than it meant.
    """

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self.values = values

    def random(self) -> float:
        if not self.values:
            raise RuleBroken("more loss draws than scripted")
        return self.values.pop(0)


def lost_segment_holds_back_the_next() -> None:
    """A lost segment holds back the ones behind it (in-order delivery)."""
    link = Link("check", rtt=0.010, loss=0.5)
    direction = Direction(link, Scripted([0.0, 0.99, 0.99]))
    direction.send(b"first", 0.0)  # lost once: retransmitted after one RTO
    direction.send(b"second", 0.001)  # through at once, but must wait for "first"
    arrival = link.rto + 0.005
    expect(math.isclose(direction.next_delivery(), arrival), f"{direction.next_delivery()}")
    expect(list(direction.take_due(arrival - 0.001)) == [], "delivered before the lost one")
    delivered = list(direction.take_due(arrival))
    expect(delivered == [b"first", b"second"], f"delivered {delivered}")


def retransmission_timeout_doubles() -> None:
    """Each retransmission of a segment waits twice as long as the one before."""
    link = Link("check", rtt=0.0, loss=0.5)
    direction = Direction(link, Scripted([0.0, 0.0, 0.0, 0.99]))
    direction.send(b"x", 0.0)
    expected = link.rto * (1 + 2 + 4)
    expect(math.isclose(direction.next_delivery(), expected), f"{direction.next_delivery()}")


def crashed_sender_never_retransmits() -> None:
    """A crashed host's segments still on the wire arrive; nothing it must resend does."""
    link = Link("check", rtt=0.010, loss=0.5)
    direction = Direction(link, Scripted([0.99, 0.0, 0.99, 0.99]))
    direction.send(b"on the wire", 0.0)
    direction.send(b"lost", 0.001)
    direction.send(b"behind the hole", 0.002)
    direction.sender_crashed(0.003)
    delivered = list(direction.take_due(10.0))
    expect(delivered == [b"on the wire"], f"delivered {delivered}")


def changing_path_is_lossy_only_when_degraded() -> None:
    """A changing path loses segments in its degraded phase only, per transmission."""
    link = Link("check", rtt=0.010, degraded_loss=0.5, period=100.0, degraded_for=25.0)
    phases = [link.phase(t) for t in (0.0, 74.9, 75.0, 99.9, 100.0, 180.0)]
    expect(phases == ["clean", "clean", "degraded", "degraded", "clean", "degraded"], f"{phases}")
    expect((link.loss_at(10.0), link.loss_at(80.0)) == (0.0, 0.5), "loss by phase")
    expect(math.isclose(link.degraded_since(180.0), 5.0), f"{link.degraded_since(180.0)}")
    expect(Link("steady", rtt=0.01, loss=0.2).phase(80.0) == "", "a steady path has a phase")
    # Lost at the end of the degraded phase, retransmitted into the clean one: through.
    direction = Direction(link, Scripted([0.0]))
    direction.send(b"lost once", 99.95)
    arrival = 99.95 + link.rto + 0.005
    expect(math.isclose(direction.next_delivery(), arrival), f"{direction.next_delivery()}")
    clean = Direction(link, Scripted([]))  # no draw at all in the clean phase
    clean.send(b"never lost", 10.0)
    expect(math.isclose(clean.next_delivery(), 10.005), f"{clean.next_delivery()}")


def rto_follows_linux_on_each_profile() -> None:
    """The RTO is Linux's ``srtt + max(4 * mdev, 200 ms)``: 200.2, 250 and 320 ms."""
    rtos = [round(link.rto, 6) for link in LINKS]
    expect(rtos == [0.2002, 0.25, 0.32], f"{rtos}")


def _cell(deaths: int, median: float) -> Cell:
    """A fixed-policy cell with ``deaths`` false deaths in 10 h and T_D around ``median``."""
    crashes = [Crash(median + offset, "timeout", 1.0) for offset in (-0.01, 0.0, 0.01)]
    outcome = Outcome(
        seconds=36_000.0,
        false_deaths=deaths,
        steady_seconds=36_000.0,
        steady_false_deaths=deaths,
        crashes=crashes,
    )
    return Cell(LINKS[0], fixed_contender(2.0), outcome)


def a_few_deaths_more_or_less_is_noise() -> None:
    """9 against 11 false deaths in equal time is noise; 0 against 8, 900 against 1000 not."""
    expect(not fewer_deaths(_cell(9, 1), _cell(11, 1)), "9 < 11 called significant")
    expect(fewer_deaths(_cell(0, 1), _cell(8, 1)), "0 < 8 called noise")
    expect(fewer_deaths(_cell(900, 1), _cell(1000, 1)), "900 < 1000 called noise")


def only_dominance_is_a_win() -> None:
    """A match is won only by being better on one axis and not worse on the other."""
    table = {
        (Axis.BETTER, Axis.EQUAL): "adaptive",
        (Axis.EQUAL, Axis.BETTER): "adaptive",
        (Axis.BETTER, Axis.WORSE): "trade-off",
        (Axis.MIXED, Axis.EQUAL): "trade-off",
        (Axis.EQUAL, Axis.WORSE): "fixed",
        (Axis.EQUAL, Axis.EQUAL): "equal",
    }
    for axes, result in table.items():
        expect(judge(*axes) == result, f"{axes} judged {judge(*axes)}")
    fast_risky, slow_safe = _cell(30, 1.0), _cell(2, 1.5)
    expect(speed(fast_risky, slow_safe) is Axis.BETTER, "a 0.5 s faster median is not faster")
    expect(safety(fast_risky, slow_safe) is Axis.WORSE, "30 against 2 deaths is not worse")


RULES: tuple[Callable[[], None], ...] = (
    lost_segment_holds_back_the_next,
    retransmission_timeout_doubles,
    crashed_sender_never_retransmits,
    changing_path_is_lossy_only_when_degraded,
    rto_follows_linux_on_each_profile,
    a_few_deaths_more_or_less_is_noise,
    only_dominance_is_a_win,
)


def broken_rules() -> list[str]:
    """``rule: what was found`` for every rule that does not hold."""
    broken = []
    for rule in RULES:
        try:
            rule()
        except RuleBroken as found:
            broken.append(f"{rule.__doc__}: {found}")
    return broken
