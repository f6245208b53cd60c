"""Adaptive against fixed: each adaptive config matched with fixed ones, noise allowed for.

Two axes: speed (T_D medians and p99s closer than :data:`MARGIN` are equal) and safety
(steady-state false deaths are equal unless an exact one-sided binomial test, given the
two connection-times, says otherwise at :data:`SIGNIFICANCE`). Each adaptive config gets
two matches (see :func:`pairings`): (a) the fastest fixed config at least as safe, and
(b) the safest fixed config at least as fast. A match is won by the side that is better
on one axis and not worse on the other; otherwise it is a trade-off (or equal).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from quality.study import Cell

MARGIN = 0.05  #: T_D medians (or p99s) closer than this, in seconds, are equal
SIGNIFICANCE = 0.05


def fewer_deaths(a: Cell, b: Cell) -> bool:
    """Whether ``a`` has significantly fewer steady-state false deaths than ``b``.

    If both rates were equal, ``a``'s share of the deaths would be binomial with ``a``'s
    share of the connection-time: an exact one-sided test, conditional on the total.
    """
    deaths_a, deaths_b = a.outcome.steady_false_deaths, b.outcome.steady_false_deaths
    total = deaths_a + deaths_b
    if total == 0:
        return False
    time_a, time_b = a.outcome.steady_seconds, b.outcome.steady_seconds
    share = time_a / (time_a + time_b)
    p_value = math.fsum(_binomial_pmf(total, k, share) for k in range(deaths_a + 1))
    return p_value < SIGNIFICANCE


def _binomial_pmf(n: int, k: int, p: float) -> float:
    """P(X = k) for X ~ Binomial(n, p), in log space so that large counts cannot overflow."""
    log_pmf = (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    return math.exp(log_pmf)


class Axis(enum.Enum):
    """How an adaptive cell compares with a fixed one on one axis, noise allowed for."""

    BETTER = "better"
    EQUAL = "equal"
    WORSE = "worse"
    MIXED = "mixed"  #: a better median with a worse p99, or the reverse


def speed(a: Cell, b: Cell) -> Axis:
    """T_D of ``a`` against ``b``: medians and p99s closer than MARGIN are equal."""
    median = _sign(b.td(50) - a.td(50))
    tail = _sign(b.td(99) - a.td(99))
    if median * tail < 0:
        return Axis.MIXED
    return {1: Axis.BETTER, 0: Axis.EQUAL, -1: Axis.WORSE}[median or tail]


def _sign(difference: float) -> int:
    return 1 if difference > MARGIN else -1 if difference < -MARGIN else 0


def safety(a: Cell, b: Cell) -> Axis:
    """Steady-state false deaths of ``a`` against ``b``: equal unless significant."""
    if fewer_deaths(a, b):
        return Axis.BETTER
    return Axis.WORSE if fewer_deaths(b, a) else Axis.EQUAL


def judge(on_speed: Axis, on_safety: Axis) -> str:
    """``adaptive`` or ``fixed`` when one dominates, else ``equal`` or ``trade-off``."""
    axes = {on_speed, on_safety}
    if axes == {Axis.EQUAL}:
        return "equal"
    if axes <= {Axis.BETTER, Axis.EQUAL}:
        return "adaptive"
    if axes <= {Axis.WORSE, Axis.EQUAL}:
        return "fixed"
    return "trade-off"


@dataclass(frozen=True, slots=True)
class Match:
    """An adaptive cell against one fixed cell."""

    adaptive: Cell
    fixed: Cell

    @property
    def speed(self) -> Axis:
        return speed(self.adaptive, self.fixed)

    @property
    def safety(self) -> Axis:
        return safety(self.adaptive, self.fixed)

    @property
    def result(self) -> str:
        return judge(self.speed, self.safety)


@dataclass(frozen=True, slots=True)
class Pairing:
    """An adaptive config and its two fixed matches (see the module docstring)."""

    adaptive: Cell
    as_safe: Match | None  #: (a) the fastest fixed config at least as safe
    as_fast: Match | None  #: (b) the safest fixed config at least as fast

    @property
    def wins(self) -> list[str]:
        """The axes on which adaptive dominates one of its matches."""
        found = []
        for match in (self.as_safe, self.as_fast):
            if match is None or match.result != "adaptive":
                continue
            if match.speed is Axis.BETTER and "T_D" not in found:
                found.append("T_D")
            if match.safety is Axis.BETTER and "mistakes" not in found:
                found.append("mistakes")
        return found


def pairings(cells: Sequence[Cell]) -> list[Pairing]:
    """Each measured adaptive cell with its fixed matches (see the module docstring)."""
    fixed_cells = [c for c in cells if not c.contender.adaptive and c.measured]
    result = []
    for cell in cells:
        if not cell.contender.adaptive or not cell.measured:
            continue
        as_safe = min(
            (f for f in fixed_cells if not fewer_deaths(cell, f)),
            key=lambda f: f.td(50),
            default=None,
        )
        as_fast = min(
            (f for f in fixed_cells if f.td(50) <= cell.td(50) + MARGIN),
            key=lambda f: (f.steady_rate, f.td(50)),
            default=None,
        )
        result.append(
            Pairing(
                cell,
                None if as_safe is None else Match(cell, as_safe),
                None if as_fast is None else Match(cell, as_fast),
            )
        )
    return result
