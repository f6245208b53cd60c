"""bench_idle's figures: per measurement, over runs, against baselines, against targets.

- :func:`derive` turns one measurement (both workers' metrics for one window) into the
  figures of the tables (CPU without the evidence sampler's);
- :func:`aggregate` takes medians over runs (deaths summed: one false death must show;
  maxima also kept at their worst);
- :func:`ratios` compares variants *round by round* (a round measures every variant back
  to back) and keeps the median of the per-round ratios: pulsewire against the
  baselines, every build given to ``--compare`` against the floor, and ``pulsewire``
  against each of them (after / before);
- :func:`targets`: the goals the build under test must meet at the largest N.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _common as common

BUILD_UNDER_TEST = "pulsewire"
#: The ``auto`` variant: the build under test with ``Policy.auto()`` instead of ``Policy()``.
AUTO_BUILD = "pulsewire@auto"
#: ``Policy.auto()`` may cost this much of ``Policy()``'s idle CPU, at most.
AUTO_CPU_LIMIT = 1.10


def is_pulsewire(variant: str) -> bool:
    """``pulsewire`` or a build of it given to ``--compare`` (``pulsewire@LABEL``)."""
    return variant.split("@")[0] == BUILD_UNDER_TEST


def fmt(value: float, digits: int = 1, unit: str = "") -> str:
    """A figure for a table; ``—`` where nothing was measured."""
    return "—" if not math.isfinite(value) else f"{value:.{digits}f}{unit}"


# ---------------------------------------------------------------- one measurement


def derive(result: dict[str, Any]) -> dict[str, Any]:
    """The table's numbers for one measurement (CPU without the evidence sampler's)."""
    srv, cli = result["server"], result["client"]
    n = max(1, min(srv["conns"], cli["conns"]))  # live at the end of the window
    window = (srv["window"] + cli["window"]) / 2
    srv_cpu = srv["cpu"] - srv["sampler_cpu"]
    cli_cpu = cli["cpu"] - cli["sampler_cpu"]
    sc, cc = srv["counters"], cli["counters"]
    exchanges = sc["pongs_received"] + cc["pongs_received"]
    per_conn_s = n * window
    return {
        "conns": min(srv["conns"], cli["conns"]),
        "others_pct": result["others_pct"],
        "cpu_pct": 100 * srv_cpu / srv["window"],
        "us_conn_s": 1e6 * srv_cpu / (n * srv["window"]),
        "us_exchange": 1e6 * (srv_cpu + cli_cpu) / exchanges if exchanges else math.nan,
        "pair_cpu": srv_cpu / srv["window"] + cli_cpu / cli["window"],
        "rss_kib": (srv["rss_begin"] - srv["rss_idle"]) / n / 1024,
        "cli_rss_kib": (cli["rss_begin"] - cli["rss_idle"]) / n / 1024,
        "exchanges": exchanges / per_conn_s,
        "srv_tx": sc["pings_sent"] / per_conn_s,
        "srv_rx": sc["pings_received"] / per_conn_s,
        "cli_tx": cc["pings_sent"] / per_conn_s,
        "cli_rx": cc["pings_received"] / per_conn_s,
        "silence_srv": _nan_if_none(srv["max_silence"]),
        "silence_cli": _nan_if_none(cli["max_silence"]),
        **_ms_summary("dl", srv["deadline_lateness"]),
        **_ms_summary("cdl", cli["deadline_lateness"]),
        **_ms_summary("lag", srv["loop_lag"]),
        **_ms_summary("clag", cli["loop_lag"]),
        "sched_max_ms": 1e3
        * finite_max(
            _nan_if_none(srv.get("scheduler_max_lateness")),
            _nan_if_none(cli.get("scheduler_max_lateness")),
        ),
        **_deaths(result),
        "failed_connects": result["connected"]["failed"],
        "gen2": srv["gc"]["collections"][2],
        "gc_pause_ms": 1e3 * srv["gc"]["max_pause"],
        "gen2_pause_ms": 1e3 * max(srv["gc"]["max_pause_gen2"], cli["gc"]["max_pause_gen2"]),
        "objects_before": srv["objects"][0],
        "objects_after": srv["objects"][1],
        "gc_count_before": srv["gc_count"][0],
        "gc_count_after": srv["gc_count"][1],
    }


def _deaths(result: dict[str, Any]) -> dict[str, int]:
    """Losses in this window; the first window of a process pair adds those before it.

    Summed over the windows of a pair, ``lost``/``closed``/``suspects`` are therefore the
    pair's lifetime totals; ``*_window`` count only what happened while measuring.
    """
    out: dict[str, int] = {}
    for key in ("lost", "closed", "suspects"):
        window = sum(result[side]["counters"][key] for side in ("server", "client"))
        if key == "suspects":  # the sampler may see a suspicion the log missed, or vice versa
            seen = result["server"]["suspects_seen"] + result["client"]["suspects_seen"]
            window = max(window, seen)
        before = 0
        if result.get("first", True):
            for side in ("server", "client"):
                metrics = result[side]
                before += metrics["lifetime"][key] - metrics["counters"][key]
        out[key], out[key + "_window"] = before + window, window
    return out


def finite_max(*values: float) -> float:
    """The largest finite value; NaN when there is none (max() keeps a leading NaN)."""
    finite = [value for value in values if math.isfinite(value)]
    return max(finite) if finite else math.nan


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def _ms_summary(prefix: str, summary: dict[str, float] | None) -> dict[str, float]:
    if summary is None:
        return {f"{prefix}_p50": math.nan, f"{prefix}_p99": math.nan, f"{prefix}_max": math.nan}
    return {f"{prefix}_{key}": 1e3 * summary[key] for key in ("p50", "p99", "max")}


# ---------------------------------------------------------------- over runs

#: Summed over runs instead of the median: a single false death must show.
SUMMED = (
    "lost",
    "closed",
    "suspects",
    "lost_window",
    "closed_window",
    "suspects_window",
    "failed_connects",
)
#: Worst over runs (for the targets), next to the median in the table.
WORST = (
    "dl_max",
    "cdl_max",
    "lag_max",
    "sched_max_ms",
    "gen2_pause_ms",
    "gc_pause_ms",
    "silence_srv",
    "silence_cli",
)

Grouped = dict[tuple[int, str, str], list[dict[str, Any]]]


def group(results: Sequence[dict[str, Any]]) -> Grouped:
    """The successful measurements by (N, variant, loop)."""
    groups: Grouped = {}
    for result in results:
        if "error" not in result:
            key = (result["n"], result["variant"], result["loop"])
            groups.setdefault(key, []).append(result)
    return groups


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs; SUMMED keys summed; ``worst_*`` for the WORST keys."""
    out: dict[str, Any] = {"runs": len(rows)}
    for key in rows[0]:
        values = [row[key] for row in rows]
        if key in SUMMED:
            out[key] = sum(values)
        elif isinstance(values[0], list):
            out[key] = values[len(values) // 2]
        else:
            out[key] = common.median(values)
    for key in WORST:
        finite = [row[key] for row in rows if math.isfinite(row[key])]
        out["worst_" + key] = max(finite) if finite else math.nan
    return out


def aggregated(groups: Grouped, n: int, variant: str, loop: str) -> dict[str, Any] | None:
    measured = groups.get((n, variant, loop))
    return aggregate([derive(r) for r in measured]) if measured else None


# ---------------------------------------------------------------- same-round comparisons

METRICS = {
    "us_conn_s": "server CPU per connection",
    "us_exchange": "CPU per exchange (srv+cli)",
    "pair_cpu": "CPU of both processes",
    "rss_kib": "RSS per connection (KiB)",
}


@dataclass(frozen=True)
class Comparison:
    """``subject`` against ``baseline`` on one metric: a ratio, or a difference."""

    subject: str
    baseline: str
    metric: str
    difference: bool = False

    def __str__(self) -> str:
        sign = "-" if self.difference else "/"
        return f"{METRICS[self.metric]}, {self.subject} {sign} {self.baseline}"

    def of(self, subject: dict[str, Any], baseline: dict[str, Any]) -> float | None:
        mine, theirs = subject[self.metric], baseline[self.metric]
        if not (math.isfinite(mine) and math.isfinite(theirs)):
            return None
        if self.difference:
            return float(mine - theirs)
        return float(mine / theirs) if theirs > 0 else None


CPU_VS_TASKS = Comparison(BUILD_UNDER_TEST, "tasks", "us_conn_s")
EXCHANGE_VS_FLOOR = Comparison(BUILD_UNDER_TEST, "floor", "us_exchange")
RSS_OVER_NONE = Comparison(BUILD_UNDER_TEST, "none", "rss_kib", difference=True)
#: Policy() over Policy.auto(), per round (the table shows its inverse).
AUTO_VS_DEFAULT = Comparison(BUILD_UNDER_TEST, AUTO_BUILD, "us_conn_s")


def comparisons(variants: Sequence[str]) -> list[Comparison]:
    """Every pulsewire build against the baselines; pulsewire against each other build."""
    found = []
    for build in (v for v in variants if is_pulsewire(v)):
        found += [
            Comparison(build, "tasks", "us_conn_s"),
            Comparison(build, "floor", "us_conn_s"),
            Comparison(build, "floor", "us_exchange"),
            Comparison(build, "floor", "pair_cpu"),
            Comparison(build, "none", "rss_kib", difference=True),
        ]
    for other in (v for v in variants if is_pulsewire(v) and v != BUILD_UNDER_TEST):
        found += [Comparison(BUILD_UNDER_TEST, other, metric) for metric in METRICS]
    return found


Ratios = dict[tuple[int, str], dict[Comparison, tuple[float, list[float]]]]


def ratios(
    groups: Grouped, ns: Sequence[int], variants: Sequence[str], loops: Sequence[str]
) -> Ratios:
    """Per (N, loop): each comparison's median over rounds, and its value in every round."""
    out: Ratios = {}
    for n in ns:
        for loop in loops:
            by_run: dict[str, dict[int, dict[str, Any]]] = {}
            for variant in variants:
                for result in groups.get((n, variant, loop), []):
                    by_run.setdefault(variant, {})[result["run"]] = derive(result)
            found: dict[Comparison, tuple[float, list[float]]] = {}
            for comparison in comparisons(variants):
                subject = by_run.get(comparison.subject, {})
                baseline = by_run.get(comparison.baseline, {})
                values = [
                    value
                    for run in sorted(subject.keys() & baseline.keys())
                    if (value := comparison.of(subject[run], baseline[run])) is not None
                ]
                if values:
                    found[comparison] = (common.median(values), values)
            out[(n, loop)] = found
    return out


# ---------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """One target of the build under test: what it asks, what was measured, the verdict."""

    goal: str
    measured: str
    ok: bool | None  #: None: not decided (a baseline was not measured)

    @property
    def verdict(self) -> str:
        return "n/a" if self.ok is None else ("PASS" if self.ok else "FAIL")


def targets(
    a: dict[str, Any], found: dict[Comparison, tuple[float, list[float]]], n: int
) -> list[Target]:
    """Each target for the build under test at one N and loop."""

    def ratio(comparison: Comparison) -> float:
        return found[comparison][0] if comparison in found else math.nan

    deaths_ok = a["lost"] == 0 and a["closed"] == 0 and a["suspects"] == 0 and a["conns"] >= n
    # A side that fires no timer (a pulsewire server while its clients lead) has no
    # lateness: the other side's counts, not a NaN that max() would pass along.
    p99 = finite_max(a["dl_p99"], a["cdl_p99"])
    worst = finite_max(a["worst_dl_max"], a["worst_cdl_max"], a["worst_sched_max_ms"])
    cpu, rss = ratio(CPU_VS_TASKS), ratio(RSS_OVER_NONE)
    gen2 = a["worst_gen2_pause_ms"]
    auto = (
        [
            Target(
                f"Policy.auto() idle CPU ≤ {AUTO_CPU_LIMIT:g}x Policy()'s",
                fmt(1 / found[AUTO_VS_DEFAULT][0], 2, "x"),
                1 / found[AUTO_VS_DEFAULT][0] <= AUTO_CPU_LIMIT,
            )
        ]
        if AUTO_VS_DEFAULT in found and found[AUTO_VS_DEFAULT][0] > 0
        else []
    )
    return [
        *auto,
        Target(
            f"{n:,} idle connections held, zero false deaths/suspects",
            f"{a['runs']} runs: conns {a['conns']:.0f}, lost {a['lost']}, closed "
            f"{a['closed']}, suspect {a['suspects']}",
            deaths_ok,
        ),
        Target("idle CPU ≤ 0.5x per-task heartbeat", fmt(cpu, 2, "x"), _at_most(cpu, 0.5)),
        Target("RSS/conn ≤ no-heartbeat + 2 KiB", fmt(rss, 2, " KiB"), _at_most(rss, 2.0)),
        Target("deadline lateness p99 ≤ 20 ms", fmt(p99, 1, " ms (worse side)"), _at_most(p99, 20)),
        Target(
            "deadline lateness max ≤ 100 ms",
            fmt(worst, 1, " ms (worst run, either side)"),
            _at_most(worst, 100),
        ),
        Target(
            "no full-collection pause > 50 ms",
            fmt(gen2, 1, " ms (worst run, either side)"),
            _at_most(gen2, 50.0, missing_ok=True),
        ),
    ]


def _at_most(value: float, limit: float, missing_ok: bool = False) -> bool | None:
    if not math.isfinite(value):
        return True if missing_ok else None
    return value <= limit
