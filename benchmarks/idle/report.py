"""bench_idle's reports: the short RESULTS.md section and the full detail.

:func:`section` is what RESULTS.md keeps: the claim, one table at the largest N, the
headline same-round ratios (and, for every ``--compare`` build, its ratio to pulsewire and
to the floor), the targets, when, where and how it was measured. :func:`detail` is printed
on every run: two tables per N, every ratio round by round, every target, pulsewire's
warnings and the failed measurements. The figures come from :mod:`idle.figures`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import _common as common

from idle.figures import (
    AUTO_BUILD,
    BUILD_UNDER_TEST,
    CPU_VS_TASKS,
    EXCHANGE_VS_FLOOR,
    RSS_OVER_NONE,
    Comparison,
    Grouped,
    Ratios,
    aggregated,
    finite_max,
    fmt,
    group,
    is_pulsewire,
    ratios,
    targets,
)
from idle.harness import last_line
from idle.variants import LABELS

HEADING = "bench_idle: idle cost at scale"
CLAIM = (
    "at 10,000 idle connections with a 1 s heartbeat, pulsewire costs at most half the CPU "
    "of a per-task heartbeat, holds at most 2 KiB per connection more than no heartbeat, "
    "keeps its deadlines within 20 ms (p99) and declares no live peer dead. Its CPU per "
    "PING/PONG exchange against a hand-written Protocol+ticker floor that detects nothing "
    "is reported, not a target."
)
#: A run of ``Policy()`` and ``Policy.auto()`` alone (``--variants pulsewire,auto``, often
#: with a longer ``--warmup``: an adaptive connection settles in about half a minute) is
#: reported under its own heading (its own key, before the colon), so that it does not
#: replace the run with the baselines.
AUTO_HEADING = "bench_idle, Policy.auto(): idle cost against Policy()"
AUTO_CLAIM = (
    "at 10,000 idle connections, Policy.auto() costs at most 1.1 times the CPU of Policy(): "
    "the same exchanges per interval, plus learning the link (server CPU per connection, "
    "median of same-round ratios)."
)


def heading_and_claim(variants: Sequence[str]) -> tuple[str, str]:
    """The RESULTS.md heading a run's section goes under, and the claim it checks."""
    if set(variants) == {BUILD_UNDER_TEST, AUTO_BUILD}:
        return AUTO_HEADING, AUTO_CLAIM
    return HEADING, CLAIM


#: pulsewire log events worth reporting: deaths, suspicions, late timers, hook errors.
TROUBLE_EVENTS = ("peer.dead", "peer.suspect", "peer.recovered", "scheduler.late", "handler.error")


@dataclass(frozen=True)
class RunFacts:
    """How a run was made: what every report states, and what ``--json`` saves."""

    command: list[str]
    started: datetime
    elapsed: float  #: seconds
    revision: str  #: of this tree's ``src/``
    builds: dict[str, str]  #: pulsewire variant -> description of the build it ran
    ns: list[int]
    variants: list[str]
    loops: list[str]
    settings: str  #: windows, warm-up, process pairs, -O


def label(variant: str) -> str:
    return LABELS.get(variant, variant)


# ---------------------------------------------------------------- formatting


def _slash(*values: float, digits: int = 1) -> str:
    if not any(math.isfinite(v) for v in values):
        return "—"
    return " / ".join(fmt(v, digits) for v in values)


def _count(value: int) -> str:
    return f"{value / 1000:.0f}k" if value >= 10_000 else str(value)


def _losses(a: dict[str, Any]) -> str:
    """``lost / closed[ / suspect]``, then how many of them happened inside the windows."""
    keys = ("lost", "closed", "suspects") if a["suspects"] else ("lost", "closed")
    total = " / ".join(str(a[key]) for key in keys)
    if not any(a[key] for key in keys):
        return total
    in_windows = " / ".join(str(a[key + "_window"]) for key in keys)
    return f"{total} ({in_windows} in windows)"


def _deadline(a: dict[str, Any]) -> str:
    """Deadline lateness p99 / max of the side that fires the timers (ms)."""
    return _slash(finite_max(a["dl_p99"], a["cdl_p99"]), finite_max(a["dl_max"], a["cdl_max"]))


# ---------------------------------------------------------------- the RESULTS.md section

SECTION_HEADERS = (
    "variant",
    "loop",
    "conns",
    "srv µs/conn·s",
    "µs/exchange (srv+cli)",
    "RSS KiB/conn",
    "deadline late ms p99 / max",
    "lost / closed [/ suspect]",
)


def section(results: Sequence[dict[str, Any]], facts: RunFacts) -> str:
    """The RESULTS.md section: the claim, one table at the largest N, ratios, targets."""
    groups = group(results)
    n = max(facts.ns)
    found = ratios(groups, [n], facts.variants, facts.loops)
    rows = []
    for variant in facts.variants:
        for loop in facts.loops:
            a = aggregated(groups, n, variant, loop)
            if a is None:
                rows.append([label(variant), loop, "failed", *[""] * 5])
                continue
            rows.append(
                [
                    label(variant),
                    loop,
                    f"{a['conns']:,.0f}",
                    fmt(a["us_conn_s"], 2),
                    fmt(a["us_exchange"]),
                    fmt(a["rss_kib"], 2),
                    _deadline(a),
                    _losses(a),
                ]
            )
    findings = [_ratio_finding(found, n, facts.loops, facts.variants)]
    findings += [_target_finding(groups, found, n, facts.loops)]
    findings += [f"`{name}` ran {build}." for name, build in facts.builds.items() if "@" in name]
    return common.claim_section(
        heading_and_claim(facts.variants)[1],
        common.markdown_table(SECTION_HEADERS, rows),
        findings,
        measured=common.measured_on(facts.started, facts.revision, ("uvloop", "websockets")),
        command=f"python benchmarks/bench_idle.py {' '.join(facts.command)}".strip(),
        how=f"{facts.settings}; N = {n:,}; the run's standard output has every figure",
    )


def _headline(variants: Sequence[str]) -> list[Comparison]:
    """The ratios the section states: pulsewire against its baselines, and every other
    build against pulsewire (after / before) and against the floor."""
    found = [EXCHANGE_VS_FLOOR, CPU_VS_TASKS, RSS_OVER_NONE]
    for other in (v for v in variants if is_pulsewire(v) and v != BUILD_UNDER_TEST):
        found += [
            Comparison(BUILD_UNDER_TEST, other, "us_exchange"),
            Comparison(BUILD_UNDER_TEST, other, "us_conn_s"),
            Comparison(other, "floor", "us_exchange"),
        ]
    return found


def _ratio_finding(found: Ratios, n: int, loops: Sequence[str], variants: Sequence[str]) -> str:
    """The headline same-round ratios, one value per loop."""
    parts = []
    for comparison in _headline(variants):
        values = [found.get((n, loop), {}).get(comparison) for loop in loops]
        if any(v is not None for v in values):
            unit = " KiB" if comparison.difference else "x"
            text = " / ".join("—" if v is None else f"**{v[0]:.2f}{unit}**" for v in values)
            parts.append(f"{comparison}: {text}")
    if not parts:
        return "Same-round ratios: none (pulsewire or its baselines were not measured)."
    loops_text = " / ".join(loops)
    return f"Same-round ratios, median over rounds ({loops_text}): " + "; ".join(parts) + "."


def _target_finding(groups: Grouped, found: Ratios, n: int, loops: Sequence[str]) -> str:
    """``Targets at N = 10,000: 7 of 7 pass on asyncio, ...``, then what failed or was not
    decided (a baseline not measured), with the loops and figures concerned."""
    passed: dict[str, str] = {}
    exceptions: dict[tuple[str, str], list[str]] = {}
    for loop in loops:
        a = aggregated(groups, n, BUILD_UNDER_TEST, loop)
        if a is None:
            exceptions.setdefault(("not measured", BUILD_UNDER_TEST), []).append(loop)
            continue
        checked = targets(a, found.get((n, loop), {}), n)
        passed[loop] = f"{sum(t.ok is True for t in checked)} of {len(checked)}"
        for t in checked:
            if t.ok is False:
                exceptions.setdefault(("FAIL", t.goal), []).append(f"{loop} {t.measured}")
            elif t.ok is None:
                exceptions.setdefault(("not decided (no baseline)", t.goal), []).append(loop)
    counts = ", ".join(f"{count} pass on {loop}" for loop, count in passed.items())
    others = [
        f"{verdict}: {goal} ({'; '.join(where)})" for (verdict, goal), where in exceptions.items()
    ]
    return f"Targets at N = {n:,}: " + "; ".join([counts, *others] if counts else others) + "."


# ---------------------------------------------------------------- the full detail (stdout)

DETAIL_HEADERS = (
    "variant",
    "loop",
    "conns",
    "srv CPU %",
    "srv µs/conn·s",
    "µs/exch (srv+cli)",
    "RSS KiB/conn",
    "exch/conn·s",
    "srv ping tx/rx",
    "cli ping tx/rx",
    "max silence s srv/cli",
    "deadline late ms p50/p99/max",
    "cli deadline ms p99/max",
    "loop lag ms p50/p99/max",
    "lost / closed [/ suspect]",
    "gen2 GCs / max pause ms",
    "gc objects before→after",
    "others' CPU %",
)
GC_HEADERS = (
    "variant",
    "loop",
    "srv gc.get_count() before",
    "after",
    "srv gc objects before",
    "after",
    "gen2 pause ms (median, both sides)",
    "gen2 pause ms (worst run)",
    "cli RSS KiB/conn",
    "deadline late max ms (worst run)",
    "loop lag max ms (worst run)",
)


def _detail_row(variant: str, loop: str, a: dict[str, Any]) -> list[str]:
    return [
        label(variant),
        loop,
        f"{a['conns']:.0f}",
        fmt(a["cpu_pct"]),
        fmt(a["us_conn_s"], 2),
        fmt(a["us_exchange"]),
        fmt(a["rss_kib"], 2),
        fmt(a["exchanges"], 2),
        f"{fmt(a['srv_tx'], 2)}/{fmt(a['srv_rx'], 2)}",
        f"{fmt(a['cli_tx'], 2)}/{fmt(a['cli_rx'], 2)}",
        f"{fmt(a['silence_srv'], 2)}/{fmt(a['silence_cli'], 2)}",
        _slash(a["dl_p50"], a["dl_p99"], a["dl_max"]),
        _slash(a["cdl_p99"], a["cdl_max"]),
        _slash(a["lag_p50"], a["lag_p99"], a["lag_max"]),
        _losses(a),
        f"{a['gen2']:.0f} / {fmt(a['gc_pause_ms'])}",
        f"{_count(int(a['objects_before']))}→{_count(int(a['objects_after']))}",
        fmt(a["others_pct"], 0),
    ]


def _gc_row(variant: str, loop: str, a: dict[str, Any]) -> list[str]:
    return [
        label(variant),
        loop,
        str(tuple(a["gc_count_before"])),
        str(tuple(a["gc_count_after"])),
        f"{a['objects_before']:.0f}",
        f"{a['objects_after']:.0f}",
        fmt(a["gen2_pause_ms"]),
        fmt(a["worst_gen2_pause_ms"]),
        fmt(a["cli_rss_kib"], 2),
        fmt(a["worst_dl_max"]),
        fmt(a["worst_lag_max"]),
    ]


def _tables(groups: Grouped, facts: RunFacts) -> list[str]:
    parts: list[str] = []
    for n in facts.ns:
        rows, gc_rows = [], []
        for variant in facts.variants:
            for loop in facts.loops:
                a = aggregated(groups, n, variant, loop)
                if a is None:
                    rows.append([label(variant), loop, "failed", *[""] * 15])
                    continue
                rows.append(_detail_row(variant, loop, a))
                gc_rows.append(_gc_row(variant, loop, a))
        parts += [f"### N = {n:,}", "", common.markdown_table(DETAIL_HEADERS, rows), ""]
        parts += [f"GC and worst-run detail, N = {n:,}:", ""]
        parts += [common.markdown_table(GC_HEADERS, gc_rows), ""]
    return parts


def _ratio_lines(found: Ratios) -> list[str]:
    lines = []
    for (n, loop), values in found.items():
        for comparison, (med, each) in values.items():
            rounds = ", ".join(f"{v:.2f}" for v in each)
            lines.append(f"- N={n:,} {loop}: {comparison}: **{med:.2f}** (per round: {rounds})")
    return lines or ["- (pulsewire or a baseline was not measured)"]


def _target_lines(groups: Grouped, found: Ratios, loops: Sequence[str]) -> list[str]:
    n = max((key[0] for key in groups), default=0)
    lines = [f"Targets, evaluated at N = {n:,} (medians over runs unless noted):", ""]
    for loop in loops:
        a = aggregated(groups, n, BUILD_UNDER_TEST, loop)
        if a is None:
            lines.append(f"- {loop}: pulsewire not measured")
            continue
        lines.append(f"- **{loop}**:")
        checked = targets(a, found.get((n, loop), {}), n)
        lines += [f"  - {t.verdict}: {t.goal}: {t.measured}" for t in checked]
    return lines


def _log_event_lines(groups: Grouped) -> list[str]:
    """pulsewire's own warnings (deaths, suspicions, late timers), summed over processes."""
    lines = []
    for (n, variant, loop), results in sorted(groups.items()):
        if not is_pulsewire(variant):
            continue
        totals: Counter[str] = Counter()
        for result in results:
            if result.get("last", True):  # log counts are per process: its last window
                for side in ("server", "client"):
                    totals.update(result[side].get("log_counts", {}))
        trouble = {k: v for k, v in sorted(totals.items()) if k.split(":")[0] in TROUBLE_EVENTS}
        lines.append(f"- N={n:,} {variant} {loop}: {trouble or 'none'}")
    return lines


def detail(results: Sequence[dict[str, Any]], facts: RunFacts, policy: str) -> str:
    """Everything measured: run facts, two tables per N, every ratio, targets, warnings."""
    groups = group(results)
    found = ratios(groups, facts.ns, facts.variants, facts.loops)
    info = common.versions()
    hard = next((r["nofile_hard"] for r in results if "nofile_hard" in r), "?")
    builds = [f"- `{name}`: {build}" for name, build in facts.builds.items()]
    parts = [
        f"bench_idle, {facts.started:%Y-%m-%d %H:%M} UTC, {common.machine()}, Python "
        f"{info['python']}, uvloop {info['uvloop']}, websockets {info['websockets']}, msgspec "
        f"{info['msgspec']}; RLIMIT_NOFILE hard limit {hard}; took {facts.elapsed / 60:.1f} min.",
        f"Command: `python benchmarks/bench_idle.py {' '.join(facts.command)}`: {facts.settings}.",
        f"pulsewire policy: `{policy}`; baselines time out after 3 s.",
        "",
        "Builds of pulsewire:",
        "",
        *(builds or ["- (none measured)"]),
        "",
        *_tables(groups, facts),
        "Same-round ratios (median over rounds, then each round):",
        "",
        *_ratio_lines(found),
        "",
        *_target_lines(groups, found, facts.loops),
        "",
        "pulsewire warnings logged over each process's life (connect and warm-up included):",
        "",
        *_log_event_lines(groups),
    ]
    failures = [r for r in results if "error" in r]
    if failures:
        parts += ["", "Failed measurements:", ""]
        parts += [
            f"- {r['variant']}/{r['loop']}/N={r['n']}: {last_line(r['error'])}" for r in failures
        ]
    return "\n".join(parts) + "\n"
