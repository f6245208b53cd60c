"""detection_quality's reports: the short RESULTS.md section and the full tables.

:func:`section` is what RESULTS.md keeps: the claim and one table, a row per scenario,
following the headline adaptive config (:data:`quality.study.HEADLINE`) against the
fastest fixed timeout at least as safe, measured in the same run on the same paths.
:func:`detail` is printed on every run: per scenario, every policy's T_D, false deaths,
T_MR and query accuracy, each adaptive config's two matches, and the verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from _common import claim_section, markdown_table, measured_on, percentile

from quality.matches import MARGIN, SIGNIFICANCE, Match, Pairing, pairings
from quality.model import Link
from quality.study import CEILING, HEADLINE, WARMUP, Cell, Population, Study

HEADING = "detection_quality: detection quality model"
CLAIM = (
    "with one policy for connections over different paths, the adaptive policy "
    f"(`{HEADLINE}`: `Adaptive(min_timeout=1.25)`, defaults otherwise) detects a crash "
    "sooner than any fixed timeout that makes no more false deaths; on one known, steady "
    "path a well-chosen fixed timeout is as good (simulated TCP, fake clock, real sessions)."
)


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


def scenario_title(scenario: Link | Population) -> str:
    """The short name of a scenario: ``LAN 1%``, ``WAN changing 0%/10%``, ``mixed paths``."""
    if isinstance(scenario, Population):
        return scenario.name
    if scenario.degraded_loss is None:
        return short_name(scenario)
    return f"{scenario.name} changing {scenario.loss:.0%}/{scenario.degraded_loss:.0%}"


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
        "response delays learnt: the side that rarely pings), or a tail "
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
    found = [(scenario_title(link), cells) for link, cells in study.scenarios()]
    return found + [(scenario_title(p), cells) for p, cells in study.populations()]


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
    wins = _wins(scenarios)
    return [
        f"Adaptive dominated a fixed match in {len(wins)} of {len(scenarios)} scenarios. "
        "Results of (a) / (b) per scenario and adaptive config (bold: adaptive dominates "
        "one; t/o: trade-off):",
        "",
        verdict_table(study),
        "",
        *(["Wins:", "", *(f"- {win}." for win in wins)] if wins else []),
    ]


def _wins(scenarios: Sequence[tuple[str, list[Cell]]]) -> list[str]:
    """``scenario: adaptive config (axes)`` for every match an adaptive config dominated."""
    found = []
    for title, cells in scenarios:
        won = [p for p in pairings(cells) if p.wins]
        if won:
            configs = ", ".join(f"{p.adaptive.contender.label} ({'/'.join(p.wins)})" for p in won)
            found.append(f"{title}: {configs}")
    return found


# ---------------------------------------------------------------- the RESULTS.md section

SECTION_HEADERS = (
    "scenario",
    "adaptive T_D p50 / p99 s",
    "adaptive false deaths / conn-h",
    "(a) fastest fixed at least as safe",
    "its T_D p50 / p99 s",
    "its false deaths / conn-h",
    "T_D p50 adaptive / fixed",
    "result",
)


def headline_row(title: str, cells: Sequence[Cell]) -> list[str]:
    """One scenario: the headline adaptive config against its match (a)."""
    pairing = next((p for p in pairings(cells) if p.adaptive.contender.label == HEADLINE), None)
    if pairing is None or pairing.as_safe is None:
        return [title, *["n/a"] * (len(SECTION_HEADERS) - 1)]
    mine, theirs = pairing.adaptive, pairing.as_safe.fixed
    ratio = mine.td(50) / theirs.td(50)
    return [
        title,
        _td_pair(mine),
        rate_text(mine.steady_rate),
        theirs.contender.label,
        _td_pair(theirs),
        rate_text(theirs.steady_rate),
        "n/a" if not math.isfinite(ratio) else f"{ratio:.2f}x",
        _short_result(pairing.as_safe),
    ]


def section(study: Study, command: str, started: datetime, revision: str) -> str:
    """The RESULTS.md section: the claim, one row per scenario, the wins, the run's facts."""
    options = study.options
    scenarios = all_scenarios(study)
    wins = _wins(scenarios)
    findings = [
        f"Baseline, same run: fixed timeouts from {_fixed_range(study)} s on the same paths "
        f"and seeds. Result (a): T_D medians within {MARGIN:g} s are equal, false deaths "
        f"(pairs ≥ {WARMUP:g} s old) equal unless an exact binomial test says otherwise "
        f"(p < {SIGNIFICANCE:g}); t/o: trade-off.",
        f"Any adaptive config dominated a fixed match in {len(wins)} of {len(scenarios)} "
        "scenarios" + (": " + "; ".join(wins) if wins else "") + ".",
    ]
    return claim_section(
        CLAIM,
        markdown_table(SECTION_HEADERS, [headline_row(t, cells) for t, cells in scenarios]),
        findings,
        measured=measured_on(started, revision),
        command=command,
        how=f"{options.hours:g} h of live pairs and {options.crashes} crash trials per cell, "
        f"seed {options.seed}; the run's standard output has every table",
    )


def _fixed_range(study: Study) -> str:
    timeouts = sorted(c.policy.timeout for c in study.options.contenders() if not c.adaptive)
    return f"{timeouts[0]:g} to {timeouts[-1]:g}"


# ---------------------------------------------------------------- the full tables (stdout)


def detail(study: Study, command: str, started: datetime) -> str:
    """Every table of the study, with how to read them."""
    options = study.options
    header = f"""\
`{command}`: {started:%Y-%m-%d %H:%M} UTC, {study.elapsed:.0f} s wall clock, \
{options.workers} worker(s), seed {options.seed}.

- Per cell: ≥ {options.hours:g} h of live pairs (extended until the crash trials are
  done) and {options.crashes} crash trials at random instants ≥ {WARMUP:g} s after their
  pair started. Every policy has `interval=1`; the adaptive ceiling is {CEILING:g} s.
- T_D: crash to DEAD. T_MR: connection-time / false deaths. *steady*: false deaths per
  connection-hour counting only pairs ≥ {WARMUP:g} s old, the population the crash trials
  sample. P_A: fraction of time a side did not hold its live peer SUSPECT.
- Matches, per adaptive config: (a) the fastest fixed config at least as safe, (b) the
  safest fixed config at least as fast (rules: `benchmarks/quality/matches.py`)."""
    sections = [scenario_section(link, cells) for link, cells in study.scenarios()]
    sections += [population_section(p, cells) for p, cells in study.populations()]
    summary = ["### Summary", "", *summary_lines(study)]
    return "\n\n".join([header, *sections, "\n".join(summary)])
