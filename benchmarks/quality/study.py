"""What detection_quality measures: the policies, the paths, and one cell per pair of them.

A :class:`Cell` is one policy (a :class:`Contender`) on one path: what
:func:`quality.model.simulate` measured there, and the figures derived from it (T_D
percentiles, false-death rates, T_MR). A :class:`Population` is several paths served by
one policy at once; its cells pool their members' cells. :func:`run_study` runs every
cell of an :class:`Options`, in worker processes when asked.
"""

from __future__ import annotations

import math
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

from _common import percentile

from pulsewire.core.policy import Adaptive, Policy
from quality.model import Link, Outcome, simulate

INTERVAL = 1.0
CEILING = 10.0  #: the adaptive policies' timeout: ceiling, and timeout during warm-up
WARMUP = 60.0  #: a crash comes at least this long after its pair started

LINKS = (
    Link("LAN", rtt=0.0002),
    Link("WAN", rtt=0.040, jitter=0.010),
    Link("jittery WAN", rtt=0.020, jitter=0.100),
)
LOSSES = (0.0, 0.01, 0.10)
#: A path whose loss changes: the WAN, clean for 40 minutes, then 10 % loss for 20, hourly.
CHANGING = Link(
    "WAN", rtt=0.040, jitter=0.010, degraded_loss=0.10, period=3600.0, degraded_for=1200.0
)
FIXED_TIMEOUTS = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0)
#: (floor, phi, tail phi); a tail phi of None is the normal-only estimator of earlier releases.
ADAPTIVE_SWEEP: tuple[tuple[float, float, float | None], ...] = (
    (1.25, 8.0, None),
    (3.0, 8.0, None),
    (1.25, 8.0, 3.0),
    (1.25, 8.0, 4.0),
    (1.5, 8.0, 3.0),
    (2.0, 8.0, 3.0),
    (3.0, 8.0, 3.0),
)


@dataclass(frozen=True, slots=True)
class Contender:
    """A policy under test, with its label in the tables."""

    label: str
    policy: Policy

    @property
    def adaptive(self) -> bool:
        return self.policy.adaptive is not None


def fixed_contender(timeout: float) -> Contender:
    return Contender(f"fixed T={timeout:g}", Policy(interval=INTERVAL, timeout=timeout))


def adaptive_contender(floor: float, phi: float, tail: float | None) -> Contender:
    policy = Policy(
        interval=INTERVAL,
        timeout=CEILING,
        adaptive=Adaptive(min_timeout=floor, threshold=phi, tail_threshold=tail),
    )
    model = "normal only" if tail is None else f"tail {tail:g}"
    return Contender(f"adaptive F={floor:g} φ={phi:g} {model}", policy)


#: The adaptive config the RESULTS.md table follows: ``Adaptive``'s defaults, 1.25 s floor.
HEADLINE = adaptive_contender(1.25, 8.0, 3.0).label


@dataclass(frozen=True, slots=True)
class Population:
    """Connections over several paths at once, with one policy: the union of their cells.

    Connections do not share state, so a population's outcome is its members' outcomes
    side by side: each member path contributes its own live hours and crash trials.
    """

    name: str
    members: tuple[Link, ...]


def with_loss(link: Link, loss: float) -> Link:
    return Link(link.name, link.rtt, link.jitter, loss)


@dataclass(frozen=True, slots=True)
class Options:
    hours: float = 10.0
    crashes: int = 200
    seed: int = 1
    workers: int = 2
    smoke: bool = False

    def contenders(self) -> list[Contender]:
        if self.smoke:
            return [
                fixed_contender(1.5),
                fixed_contender(3.0),
                adaptive_contender(1.25, 8.0, 3.0),
            ]
        fixed = [fixed_contender(timeout) for timeout in FIXED_TIMEOUTS]
        return fixed + [adaptive_contender(*config) for config in ADAPTIVE_SWEEP]

    def links(self) -> list[Link]:
        if self.smoke:
            changing = replace(CHANGING, period=600.0, degraded_for=300.0)
            return [with_loss(LINKS[0], 0.0), with_loss(LINKS[2], 0.10), changing]
        return [with_loss(link, loss) for link in LINKS for loss in LOSSES] + [CHANGING]

    def populations(self) -> list[Population]:
        if self.smoke:
            members = (with_loss(LINKS[0], 0.0), with_loss(LINKS[2], 0.10))
            return [Population("mixed paths", members)]
        mixed = (with_loss(LINKS[0], 0.0), with_loss(LINKS[1], 0.01), with_loss(LINKS[2], 0.10))
        every = tuple(with_loss(link, loss) for link in LINKS for loss in LOSSES)
        return [Population("mixed paths", mixed), Population("all nine paths", every)]


@dataclass(frozen=True, slots=True)
class Cell:
    """One policy on one link: what :func:`simulate` measured, and the figures derived."""

    link: Link | Population
    contender: Contender
    outcome: Outcome
    members: tuple[Cell, ...] = ()  #: a population's cells, one per member path

    @property
    def detection_times(self) -> list[float]:
        return [crash.detection_time for crash in self.outcome.crashes]

    def td(self, q: float, phase: str | None = None) -> float:
        """A percentile of T_D; over the crashes in ``phase`` of a changing path if given."""
        if phase is None:
            return percentile(self.detection_times, q)
        times = [c.detection_time for c in self.outcome.crashes if c.phase == phase]
        return percentile(times, q)

    @property
    def death_rate(self) -> float:
        """False deaths per connection-hour, over all the live time."""
        return _per_hour(self.outcome.false_deaths, self.outcome.seconds)

    @property
    def steady_rate(self) -> float:
        """False deaths per connection-hour of pairs past their warm-up (as for T_D)."""
        return _per_hour(self.outcome.steady_false_deaths, self.outcome.steady_seconds)

    @property
    def tmr(self) -> float:
        """Mean time between false deaths, seconds; ``inf`` when there were none."""
        deaths = self.outcome.false_deaths
        return self.outcome.seconds / deaths if deaths else math.inf

    @property
    def measured(self) -> bool:
        """Both axes have data: crash trials ran, and some pairs outlived the warm-up."""
        return bool(self.outcome.crashes) and self.outcome.steady_seconds > 0


def _per_hour(count: int, seconds: float) -> float:
    return count / (seconds / 3600) if seconds > 0 else math.nan


@dataclass(frozen=True, slots=True)
class Task:
    link: Link
    contender: Contender
    options: Options


def run_task(task: Task) -> Cell:
    options = task.options
    seed = f"{options.seed}|{task.link.name}|{task.link.loss}|{task.contender.label}"
    if task.link.degraded_loss is not None:
        seed += f"|changing {task.link.degraded_loss}"
    seconds = options.hours * 3600
    outcome = simulate(
        task.contender.policy,
        task.link,
        random.Random(seed),
        seconds=seconds,
        crashes=options.crashes,
        warmup=WARMUP,
        max_seconds=3 * (seconds + options.crashes * WARMUP),
    )
    return Cell(task.link, task.contender, outcome)


@dataclass(frozen=True, slots=True)
class Study:
    options: Options
    cells: list[Cell]
    elapsed: float  #: wall-clock seconds

    def scenarios(self) -> list[tuple[Link, list[Cell]]]:
        """The cells grouped by link, in the order they were planned."""
        grouped: dict[Link, list[Cell]] = {}
        for cell in self.cells:
            assert isinstance(cell.link, Link)
            grouped.setdefault(cell.link, []).append(cell)
        return list(grouped.items())

    def populations(self) -> list[tuple[Population, list[Cell]]]:
        """Per population, one pooled cell per contender (see :class:`Population`)."""
        by_key = {(cell.link, cell.contender.label): cell for cell in self.cells}
        result = []
        for population in self.options.populations():
            pooled = []
            for contender in self.options.contenders():
                members = tuple(by_key[link, contender.label] for link in population.members)
                outcome = Outcome.merge(member.outcome for member in members)
                pooled.append(Cell(population, contender, outcome, members))
            result.append((population, pooled))
        return result


def run_study(options: Options) -> Study:
    started = time.perf_counter()
    tasks = [Task(link, c, options) for link in options.links() for c in options.contenders()]
    if options.workers > 1:
        with ProcessPoolExecutor(max_workers=options.workers) as pool:
            cells = list(pool.map(run_task, tasks))
    else:
        cells = [run_task(task) for task in tasks]
    return Study(options, cells, time.perf_counter() - started)
