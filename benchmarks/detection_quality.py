"""detection_quality: how fast and how wrong fixed and adaptive policies are, on a fake clock.

The two quality-of-service metrics of Chen, Toueg and Aguilera ("On the quality of service
of failure detectors", IEEE ToC 2002), measured for pulsewire policies on simulated links:

- **detection time** T_D: from the instant the peer's host crashes to the verdict DEAD
  (reported as median, p99 and max over the crash trials);
- **mistake recurrence time** T_MR: the mean time between false DEAD verdicts on a live
  peer (connection-time of live pairs / false deaths), also given as false deaths per
  connection-hour; and the **query accuracy** P_A, here the fraction of time a side did
  *not* hold its live peer SUSPECT (a false DEAD ends the connection, so time spent
  wrongly DEAD is not defined without a reconnect model).

Every cell (one policy on one link) runs a live pair of real :class:`pulsewire.core.Session`
objects for ``--hours`` of simulated time; a false DEAD is counted and a fresh pair (new
handshake, new adaptive warm-up) takes over at once. ``--crashes`` times, at random
instants at least a 60 s warm-up after the pair started, the pair is forked
(``copy.deepcopy``) and one side's host is crashed in the copy: T_D is measured there while
the live run goes on. Both sides run the same policy. The clock jumps from event to event,
so ten hours of protocol take one to three seconds; a seed gives the same tables every time.

The network model (``_quality_model.py``), stated plainly:

- included: per-direction one-way delay = base RTT / 2 + U(0, jitter), drawn per segment;
  independent loss per transmission and per direction; retransmission of a lost segment
  after the RTO Linux converges to on the path (``srtt + max(4 * mdev, 200 ms)``: 200.2 ms
  on the LAN, 250 ms on the WAN, 320 ms on the jittery WAN), doubling on every retry up to
  120 s; in-order delivery: a segment reaches the application no sooner than every segment
  written before it (head-of-line blocking), so everything behind a lost segment waits;
  each side's output at one instant travels as one segment; at one instant, deliveries are
  handled before timers. A crash is a host losing power: it sends nothing more (no FIN, no
  RST, no retransmission); what it already got across still arrives; what the survivor
  sends to it vanishes. The survivor's verdict (always TIMEOUT here) ends the trial.
- left out: ACKs (their loss, delayed ACKs, spurious retransmissions), SACK and fast
  retransmit, tail-loss probes (for one outstanding segment Linux probes after about
  2 srtt + 200 ms, close to the RTO), congestion window and Nagle; each segment's
  retransmission timer runs from its own first send (real TCP backs off per connection and
  resends what follows the hole once it is filled); the RTO is a constant of the path, not
  re-estimated. ``TCP_USER_TIMEOUT`` (which pulsewire sets to ``timeout``) is not modelled:
  it would abort the sender of the stuck segment within one one-way delay of the heartbeat
  verdict on the other side, for the same stuck segment, so it changes no count. No
  processing time, event-loop latency or clock drift (the local-stall guard never acts),
  no bursty or correlated loss, no outages, no application traffic: the links carry only
  heartbeats, the worst case for evidence (a busy connection has evidence all the time).

Scenarios: LAN (RTT 0.2 ms, no jitter), WAN (RTT 40 ms + 0-10 ms per direction) and a
jittery WAN (RTT 20 ms + 0-100 ms per direction: jitter of several RTTs), each with 0 %,
1 % and 10 % loss per direction; a *changing* path, the WAN clean for 40 minutes and at
10 % loss for the next 20, every hour (T_D and false deaths are also given per phase);
and two *populations*, connections over several paths at once with one policy: "mixed
paths" (LAN 0 %, WAN 1 %, jittery WAN 10 %) and "all nine paths". Connections do not
share state, so a population is its members' cells side by side: its T_D is over all
their crash trials (200 per path), its false-death rate over all their live time (at
least 10 h per path); the matches below are made on those pooled figures, by the same
rules, and the T_D of each path is shown too. A fixed policy must pick one timeout for
every path of a population; an adaptive one may pick a timeout per connection.

Policies (``interval=1`` everywhere, other fields default: jitter 0.25, evidence ANY):
fixed ``Policy(interval=1, timeout=T)`` for T in 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6
(a grid fine enough that adaptive cannot win merely by falling between two of its points:
where the adaptive configs settle on a lossy path, just above its second or third
retransmission step, 1.3-3.5 s, a grid point lies at most 0.2 s higher); adaptive
``Policy(interval=1, timeout=10, adaptive=Adaptive(min_timeout=F, threshold=phi,
tail_threshold=tail))`` for (F, phi, tail) in (1.25, 8, None), (3, 8, None) (the
normal-only estimator of earlier releases, the second one the old ``Policy.wan()``),
(1.25, 8, 3), (1.25, 8, 4), (1.5, 8, 3), (2, 8, 3), (3, 8, 3) (the last is
``Policy.wan()``).

Under each table, every adaptive config is matched with fixed ones on T_D and on the
*steady-state* false-death rate: false deaths of pairs at least 60 s old per
connection-hour of such pairs, the population the crash trials sample (an adaptive policy
uses its 10 s ceiling until it has seen 5 response delays, after every reconnect, which
flatters its all-time rate). Noise decides nothing: T_D medians (and p99s) closer than
0.05 s are equal (about twice the sampling error of a median over 200 crashes), and false
death counts are equal unless an exact one-sided binomial test given the two
connection-times says otherwise (p < 0.05). The two matches:

- (a) the fastest fixed config (lowest T_D median) at least as safe as adaptive (its
  false deaths not significantly more), to compare T_D at equal mistakes;
- (b) the safest fixed config among those at least as fast (median at most 0.05 s
  slower), to compare mistakes at equal T_D.

A match is won by the side that is better on one axis and not worse on the other;
better on one and worse on the other is a *trade-off* (adaptive lies between two fixed
configs), which the verdict does not count for adaptive.

    python benchmarks/detection_quality.py --smoke     # 3 paths, 3 policies, ~1 s
    python benchmarks/detection_quality.py             # 10 h and 200 crashes per cell
    python benchmarks/detection_quality.py --hours 20 --crashes 500 --seed 2

Results go to the ``## detection_quality`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import enum
import math
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from _common import markdown_table, percentile, replace_section, versions
from _quality_model import Link, Outcome, simulate

from pulsewire.core.policy import Adaptive, Policy

__all__ = [
    "Axis",
    "Cell",
    "Contender",
    "Match",
    "Options",
    "Pairing",
    "Study",
    "main",
    "pairings",
    "render",
    "run_study",
]

RESULTS = Path(__file__).with_name("RESULTS.md")
RESULTS_HEADER = "# pulsewire benchmark results"
SECTION = "detection_quality"

INTERVAL = 1.0
CEILING = 10.0  #: the adaptive policies' timeout: ceiling, and timeout during warm-up
WARMUP = 60.0  #: a crash comes at least this long after its pair started
MARGIN = 0.05  #: T_D medians (or p99s) closer than this, in seconds, are equal
SIGNIFICANCE = 0.05

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


@dataclass(frozen=True, slots=True)
class Population:
    """Connections over several paths at once, with one policy: the union of their cells.

    Connections do not share state, so a population's outcome is its members' outcomes
    side by side: each member path contributes its own live hours and crash trials.
    """

    name: str
    members: tuple[Link, ...]


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


def with_loss(link: Link, loss: float) -> Link:
    return Link(link.name, link.rtt, link.jitter, loss)


def describe_link(link: Link) -> str:
    jitter = f" + 0-{link.jitter * 1000:g} ms per direction" if link.jitter else ", no jitter"
    text = f"{link.name} (RTT {link.rtt * 1000:g} ms{jitter}), loss {link.loss:.0%}"
    if link.degraded_loss is None:
        return text
    return (
        f"{text}, changing: {link.degraded_loss:.0%} for the last "
        f"{link.degraded_for / 60:g} min of every {link.period / 60:g}"
    )


def short_name(link: Link) -> str:
    return f"{link.name} {link.loss:.0%}"


def describe_population(population: Population) -> str:
    names = ", ".join(short_name(link) for link in population.members)
    return f"Population: {population.name} ({names}; one policy for all)"


# ---------------------------------------------------------------- running


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


# ---------------------------------------------------------------- comparing


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


# ---------------------------------------------------------------- reporting


def seconds_text(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return "never" if math.isinf(value) else f"{value:.2f}"


def rate_text(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


CELL_HEADERS = (
    "policy",
    "crashes",
    "T_D p50 s",
    "T_D p99 s",
    "T_D max s",
    "timeout p5 / p50 / p95 s",
    "false deaths",
    "T_MR",
    "false deaths / conn-h",
    "steady / conn-h",
    "P_A",
)
PAIRING_HEADERS = (
    "adaptive",
    "steady / conn-h",
    "T_D p50 / p99 s",
    "(a) fastest fixed at least as safe",
    "result",
    "(b) safest fixed at least as fast",
    "result",
)


def cell_row(cell: Cell) -> list[str]:
    outcome = cell.outcome
    deaths = str(outcome.false_deaths)
    if set(outcome.false_reasons) - {"timeout"}:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(outcome.false_reasons.items()))
        deaths += f" ({reasons})"
    tmr = cell.tmr
    return [
        cell.contender.label,
        str(len(outcome.crashes)),
        seconds_text(cell.td(50)),
        seconds_text(cell.td(99)),
        seconds_text(cell.td(100)),
        timeout_text(cell),
        deaths,
        f"> {duration_text(outcome.seconds)}" if math.isinf(tmr) else duration_text(tmr),
        rate_text(cell.death_rate),
        rate_text(cell.steady_rate),
        f"{outcome.accuracy:.5f}",
    ]


def timeout_text(cell: Cell) -> str:
    """The survivors' timeouts in force at the crashes (constant for a fixed policy)."""
    timeouts = [crash.survivor_timeout for crash in cell.outcome.crashes]
    if not cell.contender.adaptive or not timeouts:
        return f"{cell.contender.policy.timeout:g}"
    return " / ".join(f"{percentile(timeouts, q):.2f}" for q in (5, 50, 95))


def _td_pair(cell: Cell) -> str:
    return f"{seconds_text(cell.td(50))} / {seconds_text(cell.td(99))}"


def match_text(match: Match | None) -> str:
    if match is None:
        return "none"
    fixed = match.fixed
    return f"{fixed.contender.label}: {rate_text(fixed.steady_rate)}/h, {_td_pair(fixed)} s"


def result_text(match: Match | None) -> str:
    if match is None:
        return "-"
    result = match.result
    if result == "equal":
        return result
    return f"{result} (T_D {match.speed.value}, mistakes {match.safety.value})"


def pairing_row(pairing: Pairing) -> list[str]:
    cell = pairing.adaptive
    return [
        cell.contender.label,
        rate_text(cell.steady_rate),
        _td_pair(cell),
        match_text(pairing.as_safe),
        result_text(pairing.as_safe),
        match_text(pairing.as_fast),
        result_text(pairing.as_fast),
    ]


def scenario_verdict(found: Sequence[Pairing]) -> str:
    wins = [f"{p.adaptive.contender.label} ({', '.join(p.wins)})" for p in found if p.wins]
    if wins:
        return f"**Verdict: yes.** Adaptive dominates a fixed match: {'; '.join(wins)}."
    return (
        "**Verdict: no.** No adaptive config beats its fixed matches on one axis without "
        "losing on the other."
    )


def ceiling_note(cells: Sequence[Cell]) -> str | None:
    """Crash trials in which an adaptive survivor still used its ceiling, if any."""
    trials = [c for cell in cells if cell.contender.adaptive for c in cell.outcome.crashes]
    at_ceiling = [c for c in trials if c.survivor_timeout >= CEILING]
    if not at_ceiling:
        return None
    worst = max(c.detection_time for c in at_ceiling)
    return (
        f"In {len(at_ceiling)} of {len(trials)} crash trials of the adaptive configs the "
        f"survivor's timeout was its {CEILING:g} s ceiling: still in warm-up (fewer than 5 "
        "response delays learnt: the side that rarely pings, see the conclusion), or a tail "
        "allowance that reached it (a young connection, or a quadruple retransmission among "
        f"the last five answers); T_D up to {seconds_text(worst)} s there."
    )


PHASE_HEADERS = (
    "policy",
    "T_D p50 / p99 s, clean phase",
    "T_D p50 / p99 s, degraded phase",
    "timeout p50 s, clean / degraded",
    "false deaths, clean / degraded phase (first 2 min)",
)


def _td_phase(cell: Cell, phase: str) -> str:
    return f"{seconds_text(cell.td(50, phase))} / {seconds_text(cell.td(99, phase))}"


def _timeout_phase(cell: Cell, phase: str) -> str:
    timeouts = [c.survivor_timeout for c in cell.outcome.crashes if c.phase == phase]
    return "n/a" if not timeouts else f"{percentile(timeouts, 50):.2f}"


def phase_row(cell: Cell) -> list[str]:
    phases = cell.outcome.phases
    return [
        cell.contender.label,
        _td_phase(cell, "clean"),
        _td_phase(cell, "degraded"),
        f"{_timeout_phase(cell, 'clean')} / {_timeout_phase(cell, 'degraded')}",
        f"{phases['clean']} / {phases['degraded']} ({phases['onset']})",
    ]


def scenario_section(link: Link, cells: Sequence[Cell]) -> str:
    found = pairings(cells)
    parts = [
        f"### {describe_link(link)}",
        markdown_table(CELL_HEADERS, [cell_row(cell) for cell in cells]),
    ]
    if link.degraded_loss is not None:
        parts.append(markdown_table(PHASE_HEADERS, [phase_row(cell) for cell in cells]))
    parts += [markdown_table(PAIRING_HEADERS, [pairing_row(p) for p in found])]
    parts += [scenario_verdict(found)]
    note = ceiling_note(cells)
    return "\n\n".join(parts if note is None else [*parts, note])


def population_headers(population: Population) -> list[str]:
    paths = [f"{short_name(link)}: T_D p50 / p99 s, steady / conn-h" for link in population.members]
    return [
        "policy",
        *paths,
        "all: T_D p50 / p99 s",
        "all: false deaths",
        "all: steady / conn-h",
        "all: P_A",
    ]


def population_row(cell: Cell) -> list[str]:
    paths = [f"{_td_pair(m)}, {rate_text(m.steady_rate)}" for m in cell.members]
    return [
        cell.contender.label,
        *paths,
        _td_pair(cell),
        str(cell.outcome.false_deaths),
        rate_text(cell.steady_rate),
        f"{cell.outcome.accuracy:.5f}",
    ]


def population_section(population: Population, cells: Sequence[Cell]) -> str:
    found = pairings(cells)
    return "\n\n".join(
        [
            f"### {describe_population(population)}",
            markdown_table(population_headers(population), [population_row(c) for c in cells]),
            markdown_table(PAIRING_HEADERS, [pairing_row(p) for p in found]),
            scenario_verdict(found),
        ]
    )


def all_scenarios(study: Study) -> list[tuple[str, list[Cell]]]:
    """Every scenario's short title and cells: the single paths, then the populations."""
    found = [(_scenario_title(link), cells) for link, cells in study.scenarios()]
    return found + [(p.name, cells) for p, cells in study.populations()]


def _scenario_title(link: Link) -> str:
    if link.degraded_loss is None:
        return short_name(link)
    return f"{link.name} changing {link.loss:.0%}/{link.degraded_loss:.0%}"


def _short_result(match: Match | None) -> str:
    return "-" if match is None else {"trade-off": "t/o"}.get(match.result, match.result)


def verdict_table(study: Study) -> str:
    """One row per scenario, one column per adaptive config: results of (a) / (b)."""
    scenarios = all_scenarios(study)
    labels = [c.contender.label for c in scenarios[0][1] if c.contender.adaptive]
    rows = []
    for title, cells in scenarios:
        results = {p.adaptive.contender.label: p for p in pairings(cells)}
        row = [title]
        for label in labels:
            pairing = results.get(label)
            if pairing is None:
                row.append("n/a")
                continue
            mark = "**" if pairing.wins else ""
            text = f"{_short_result(pairing.as_safe)} / {_short_result(pairing.as_fast)}"
            row.append(f"{mark}{text}{mark}")
        rows.append(row)
    return markdown_table(["scenario", *labels], rows)


def summary_lines(study: Study) -> list[str]:
    """Generated: per scenario, how the matches of adaptive against fixed came out."""
    scenarios = all_scenarios(study)
    winners = []
    for title, cells in scenarios:
        found = pairings(cells)
        wins = [f"{p.adaptive.contender.label} ({', '.join(p.wins)})" for p in found if p.wins]
        if wins:
            winners.append(f"- {title}: {'; '.join(wins)}.")
    count = len(winners)
    return [
        f"Adaptive dominated a fixed match in {count} of {len(scenarios)} scenarios. Results "
        "of (a) / (b) per scenario and adaptive config (bold: adaptive dominates one; t/o: "
        "trade-off):",
        "",
        verdict_table(study),
        "",
        *(["Wins:", "", *winners] if winners else []),
    ]


CONCLUSION = """\
**How to read this.** A fixed policy's T_D spreads over about one interval below its
timeout: the peer crashes anywhere between two pieces of evidence, and the verdict comes
`timeout` after the last one (median `timeout` minus 0.3 to 0.5 s here). Its false deaths
have one cause: evidence reaches a side only through the direction towards it, and a lost
segment holds back everything behind it (TCP is in order), so one direction stuck for
longer than `timeout` minus the idle gap convicts the side at its far end, whichever side
pinged. A segment lost 1, 2, 3, 4 times in a row arrives 1, 3, 7, 15 RTOs after it was
first sent (RTO >= 200 ms), so the false-death rate falls in steps, by about the loss rate
each time the timeout absorbs one more retransmission, and is nearly flat between steps
(at 10 % loss on the WAN, 1.75, 2 and 2.5 s all cost 7-10 false deaths an hour; 3 s, 1).

**The estimators.** *Normal only* (earlier releases): `interval + mean + z * std` of the
last 100 response delays, which describes the body and the common single retransmission,
not the double or triple one that convicts. *Tail* (now the default, `tail_threshold=3`):
the larger of that and `interval + top + (2**k - 1) * rto`, room for `k` retransmissions
in a row, where `rto` is the kernel's RTO estimated from the on-time answers, and `k` the
fewest with `r ** (k + 1) <= 10 ** -tail`, `r` being the share of late answers (at least
one more than the last five answers needed, at most two more than the slowest in the
window needed). Because false deaths come in retransmission steps, the tail model puts the
timeout just above a step: on these paths, one retransmission at 0-1 % loss (1.3-1.5 s),
three at 10 % (2.5 s on the LAN, 2.9 s on the WAN, 3.3-3.5 s on the jittery WAN).

**One known, steady path: fixed is as good.** The two single-path wins above are
artefacts: on the LAN at 1 % loss the 1.5 s floor *is* fixed 1.5 s (its 0.07 s faster
median is sampling noise); on the jittery WAN at 1 % the normal-only estimator settled at
1.37-1.55 s, between the grid's 1.25 and 1.5 s, with the false deaths of 1.5 s (both lie
below the first retransmission step there, 1.54 s): a fixed 1.4 s would do the same. On
a clean path every adaptive config is a fixed policy at `max(F, interval + RTT + z *
min_std)`. At 1 % loss tail 3 allows one retransmission, as a fixed timeout at the first
step does (1.25 s on the LAN and WAN, 1.5 s on the jittery WAN), with about its false
deaths (0.4-0.7 an hour), and its p99 T_D is 0.3-0.7 s higher (after a late answer it
allows two for five answers). At 10 % loss it settles just above the third step, with the
false deaths of the fixed timeout there (jittery WAN: 0.8 an hour at a 3.04 s median,
fixed 3.5 s: 1.3 at 3.16 s), but its p99 is a step higher (5.6 s against 3.6 s): young
connections (a crash trial follows every false death at 60-150 s) and a recent triple
retransmission make it allow four. The normal-only estimator at the same floor made 28
false deaths an hour there, 35 times more; tail 4 is safer still on lossy paths and a
step slower wherever there is loss.

**Many paths, one policy: adaptive wins.** On the mixed population (LAN 0 %, WAN 1 %,
jittery WAN 10 %), the fastest fixed timeout as safe as the tail configs is 3.5 s (0.43
false deaths an hour, T_D 3.11 s median); tail 3 with a 1.25 s floor has the same false
deaths (0.50) and detects in 1.11 s: 0.84 s on the LAN, 0.97 s on the WAN, 3.04 s on the
lossy path, so it dominates; so do floors 1.5 and 2. Over all nine paths the 2 s floor
dominates fixed 3.5 s (0.34 false deaths an hour each, T_D 1.79 s against 3.10 s), while
the 1.25 s floor is faster still but makes more false deaths (0.54 an hour: its one
retransmission on the three 1 % paths), a trade-off. The normal-only estimator makes 16
(mixed) and 13 (all nine) times more false deaths than tail 3 at the same floor, and with a
3 s floor it is no better than fixed 3 s. Against the fixed configs *as fast* as adaptive
(match (b)), adaptive is always far safer but has a slower p99 (its lossy path's), a
trade-off by the rules.

**A path that changes: not yet.** On the WAN that loses 10 % for 20 minutes of every hour,
no adaptive config dominates. Tail 3 with a 1.25 s floor detects in 0.94 s in the clean
phase (fixed 3 s: 2.62 s) but its false deaths all come in the degraded phase, 10 of 11 in
its first two minutes: until a retransmission has been seen it allows one, and the first
double retransmission convicts. With a 2 s floor it is as safe as fixed 3 s and faster in
the clean phase (1.59 s against 2.62 s median), but slower at p99 in the degraded one
(4.9 s against 3.0 s), a trade-off.

**Where adaptive does not help.** A steady path whose loss you know (use the fixed timeout
just above the right retransmission step: `docs/tuning.md`); the first minutes of a loss
that starts on a clean path; a young connection, which allows one more retransmission
than an old one until a few hundred answers have fixed its share of late answers; jitter
reaching 3/4 of `rto_min` above the mean, which passes for loss (its allowance is capped
at two steps beyond the slowest answer). The simulation leaves out bursty loss, where a
recent retransmission does predict the next one (the premise of the tail's reaction to
the last five answers): untested here.

**The side that rarely pings learns nothing.** Only a side's own PINGs give it response
delays, and a side redraws its jittered ping delay only when it pings. The side that did
not ping keeps its delay, which was the longer one; the pinging side draws afresh and
usually comes in first again; over time one side's delay creeps to the full interval and
it stops pinging almost entirely. Its estimator then holds few, old samples, or fewer than
`Adaptive.warmup` (5) and keeps the ceiling: some of the T_D maxima near 10 s above are
crashes of the pinging side detected by such a survivor (the others are tail allowances
at the ceiling; see the notes under the tables). It is rare in these runs but it is a
property of the core, not of the model."""


def code_state() -> str:
    """The commit measured, and whether ``src/`` had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "src")
    except (OSError, subprocess.SubprocessError):
        return "unknown commit"
    return f"commit {commit}" + (" + uncommitted changes in src/" if dirty else "")


def render(study: Study, command: str) -> str:
    options = study.options
    found = versions()
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    header = f"""\
`{command}` — {today}, Python {found["python"]}, pulsewire {found["pulsewire"]} \
({code_state()}), {study.elapsed:.0f} s wall clock, {options.workers} worker(s).

- Simulated on a fake clock with real `Session`s; the network model and what it leaves out
  are in the docstring of `benchmarks/detection_quality.py`. Seed {options.seed}.
- Per cell: ≥ {options.hours:g} h of live pairs (extended until the crash trials are
  done) and {options.crashes} crash trials at random instants ≥ {WARMUP:g} s after their
  pair started. Every policy has `interval=1`; the adaptive ceiling is {CEILING:g} s.
- T_D: crash to DEAD. T_MR: connection-time / false deaths. *steady*: false deaths per
  connection-hour counting only pairs ≥ {WARMUP:g} s old, the population the crash trials
  sample (an adaptive policy uses its ceiling until it has seen `Adaptive.warmup`, 5,
  response delays, after every reconnect too: its all-time rate flatters it). P_A:
  fraction of time a side did not hold its live peer SUSPECT.
- Matches, per adaptive config: (a) the fastest fixed config at least as safe, (b) the
  safest fixed config at least as fast. T_D medians and p99s within {MARGIN:g} s are
  equal; steady false-death counts are equal unless an exact binomial test says
  otherwise (p < {SIGNIFICANCE:g}). A side wins a match when it is better on one axis and
  not worse on the other; otherwise it is a trade-off (or equal)."""
    sections = [scenario_section(link, cells) for link, cells in study.scenarios()]
    sections += [population_section(p, cells) for p, cells in study.populations()]
    conclusion = ["### Conclusion", "", *summary_lines(study), "", CONCLUSION]
    return "\n\n".join([header, *sections, "\n".join(conclusion)])


# ---------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=10.0, help="live hours per cell")
    parser.add_argument("--crashes", type=int, default=200, help="crash trials per cell")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--smoke", action="store_true", help="3 paths, 3 policies, tiny")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only (implied by --smoke)")
    args = parser.parse_args(argv)
    if args.hours <= 0 or args.crashes < 1 or args.workers < 1:
        parser.error("--hours must be positive, --crashes and --workers at least 1")
    return args


def options_from(args: argparse.Namespace) -> Options:
    if args.smoke:
        return Options(hours=0.1, crashes=10, seed=args.seed, workers=1, smoke=True)
    return Options(args.hours, args.crashes, args.seed, args.workers)


def main(argv: Sequence[str] | None = None) -> Study:
    args = parse_args(argv)
    options = options_from(args)
    study = run_study(options)
    command = "python benchmarks/detection_quality.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    body = render(study, command.strip())
    print(body)
    if not (args.no_write or options.smoke):
        replace_section(args.results, SECTION, body, RESULTS_HEADER)
        print(f"\nwritten to the ## {SECTION} section of {args.results}")
    return study


if __name__ == "__main__":
    main()
