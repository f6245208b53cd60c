"""detection: how fast pulsewire, tuned kernel keepalive and websockets notice real network faults.

Two Linux network namespaces joined by a veth pair (:class:`pulsewire.cli.netns.TwoHosts`,
root only): host a runs the observers, host b the peers, all as ``lab/endpoints.py``
processes (the fault lab this benchmark shares with ``tests/faults``), so every detector
faces the same fault at the same moment on the same wire. Faults are real packet faults
(nftables inside the namespaces), not loopback tricks:

- **idle blackhole**: every packet dropped, both ways, on connections that carry no
  application data (a pulled cable, a powered-off host, a firewall gone silent);
- **blackhole while writing**: the same, while the observer sends a message every 100 ms
  (the peer echoes it): the retransmission path, where kernel keepalive never runs;
- **frozen peer**: SIGSTOP; the peer's kernel still ACKs everything;
- **crash + reboot**: the peer's host loses its network, its processes die, and it comes
  back on the same address with an empty TCP stack; the next segment draws a RST;
- **graceful exit**: the peer process exits without closing; its kernel sends FIN;
- **lossy link**: 10 % of packets dropped at random each way, nobody dies; every death is
  a false death.

Detectors (each tuned as tightly as its API allows, and used on both ends):

- pulsewire ``Policy()`` (the default) and ``Policy.lan()`` (0.2 s / 0.8 s), each with
  the default ``SocketOptions()``: ``TCP_USER_TIMEOUT`` = timeout and
  ``TCP_THIN_LINEAR_TIMEOUTS``; and, on the idle blackhole and the lossy link,
  ``Policy()`` without linear timeouts, to show what they change, and ``Policy()`` with
  ``SocketOptions(congestion="reno")``, the opt-in that makes them work under BBR;
- Linux kernel keepalive on a plain socket: ``SO_KEEPALIVE``, ``TCP_KEEPIDLE=1``,
  ``TCP_KEEPINTVL=1``, ``TCP_KEEPCNT=3`` (whole seconds: this is as low as it goes);
- the same plus ``TCP_USER_TIMEOUT`` = 3 s (shorter than idle + interval * count = 4 s:
  Linux then drops after two unanswered probes) and, on the idle blackhole and the lossy
  link, plus 4 s (which keeps the count);
- websockets (asyncio API) with ``ping_interval=1, ping_timeout=1, close_timeout=1``
  (with its default ``close_timeout=10`` a client that timed out its ping waits up to 10 s
  more for the server to close TCP before the application is told: measured once, in the
  idle blackhole, as a separate row);
- a ladder of keepalive probe counts, ``1/1/c`` for c in 5, 8, 12 (idle blackhole and
  lossy link only), to compare at equal false-death rates.

Linear timeouts only work where the congestion control sets a slow-start threshold (cubic,
reno; not BBR). Only the detector that opts in (``SocketOptions(congestion="reno")``)
switches its BBR sockets to reno; the others keep the hosts' congestion control. The
lossy link runs under the host's own default congestion control, and
``--congestion reno`` (a comma-separated list; ``host`` is the host's default) runs it
again, at the same time on another pair of hosts, with that congestion control as the
namespaces' default. The report says which congestion control each run had, which
detectors' sockets were switched, and whether the default policy's sockets read
``TCP_THIN_LINEAR_TIMEOUTS`` back as on.

Detection time is measured from the fault (the nft rule in place, the signal sent, the
crash begun) to the moment the application is told (``wait_dead()`` returns, a read
fails, websockets' connection is closed), on ``time.monotonic()``, which all processes
share. Each scenario is run ``--runs`` times (fresh hosts each time, and a random
1-2 s of settling first, so that ping and probe phases differ); the table gives the
median and the maximum.

The comparison behind the "3x faster" target, precisely: on the lossy link, every
detector runs ``--lossy-connections`` connections for ``--lossy-seconds`` (by default 20
connections for 15 minutes, 5 connection-hours: kernel keepalive 1/1/5 dies about once a
connection-hour at 10 % loss, so a shorter run often sees none and cannot tell it from
1/1/8). Its false-death rate is the number of connections that died per connection-hour
they were alive (a connection that died stops counting). For a pulsewire preset P, the
*matched* kernel keepalive is the lowest rung 1/1/c (c = 3, 5, 8, 12) whose false-death
rate is no higher than P's. The speed-up is the matched keepalive's median idle-blackhole
detection time divided by P's: the idle blackhole is keepalive's best case (writing: it
never runs; frozen peer: it never fires; FIN and RST: every detector is told by the
kernel at once). With zero false deaths on both sides, "no higher" only says "none seen
in this many connection-hours", which the report states. The default policy has one more
target: no false death at all on the lossy link.

Usage (root)::

    .venv/bin/python benchmarks/detection.py            # about 25 minutes; writes both reports
    .venv/bin/python benchmarks/detection.py --congestion host,reno   # both congestion controls
    .venv/bin/python benchmarks/detection.py --smoke    # one run, fewest cells, < 60 s,
                                                        # prints the report, writes nothing
    # one detector, the lossy link only, 100 connections for 1000 s (27.8 connection-hours);
    # a partial selection prints the report and writes nothing
    .venv/bin/python benchmarks/detection.py --scenarios lossy --detectors default \\
        --lossy-connections 100 --lossy-seconds 1000

    # any user, no namespaces: the report of a run's raw measurements (saved with --json),
    # rendered again by this version of the report code; prints it, writes nothing
    .venv/bin/python benchmarks/detection.py --report-from raw.json

Results go to the ``## detection`` section of ``benchmarks/RESULTS.md`` and between the
markers of ``docs/detection.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import platform
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from _common import markdown_table, replace_section, versions
from lab.endpoints import Endpoint, Running, serve_and_watch

from pulsewire import Policy, SocketOptions
from pulsewire.cli.netns import TwoHosts, netns_available
from pulsewire.core.keepalive import NEVER_THIN_CONGESTION

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("RESULTS.md")
RESULTS_HEADER = "# pulsewire benchmark results"
DOCS = ROOT / "docs" / "detection.md"
DOCS_BEGIN = "<!-- detection results: begin (written by benchmarks/detection.py) -->"
DOCS_END = "<!-- detection results: end -->"

LOSS_PERCENT = 10
LAN_TARGET_MEDIAN = 1.0
LAN_TARGET_WORST = 1.5
SPEEDUP_TARGET = 3.0
LADDER = (3, 5, 8, 12)
#: A rung matched on *zero* false deaths is only as good as the sample: a zero count in h
#: hours bounds a rate below 3/h (95 %). Below this many connection-hours that bound is
#: too loose to tell the rungs apart (1/1/5 dies about once an hour here), so the
#: speed-up target is reported as not decided rather than passed or failed.
DECIDING_HOURS = 3.0


# ------------------------------------------------------------------------- detectors


@dataclass(frozen=True)
class Detector:
    key: str  #: endpoint name (short, unique)
    label: str  #: for the tables
    endpoint: Endpoint
    everywhere: bool = True  #: in every scenario, or only the idle blackhole and lossy link
    lossy: bool = True  #: on the lossy link


def keepalive(count: int, *, everywhere: bool) -> Detector:
    return Detector(
        f"ka{count}",
        f"keepalive 1/1/{count}",
        Endpoint(name=f"ka{count}", kind="tcp", keepalive=(1, 1, count)),
        everywhere=everywhere,
    )


DEFAULT = Policy()
DETECTORS = (
    Detector(
        "default",
        "pulsewire Policy()",
        Endpoint(name="default", kind="pulsewire", policy=DEFAULT),
    ),
    Detector(
        "lan", "pulsewire Policy.lan()", Endpoint(name="lan", kind="pulsewire", policy=Policy.lan())
    ),
    keepalive(3, everywhere=True),
    Detector(
        "ka3uto",
        "keepalive 1/1/3 + TCP_USER_TIMEOUT 3 s",
        Endpoint(name="ka3uto", kind="tcp", keepalive=(1, 1, 3), user_timeout=3.0),
    ),
    Detector(
        "ws",
        "websockets ping 1/1",
        Endpoint(
            name="ws", kind="websockets", ping_interval=1.0, ping_timeout=1.0, close_timeout=1.0
        ),
    ),
    *(keepalive(count, everywhere=False) for count in LADDER[1:]),
    Detector(
        "ka3uto4",
        "keepalive 1/1/3 + TCP_USER_TIMEOUT 4 s",
        Endpoint(name="ka3uto4", kind="tcp", keepalive=(1, 1, 3), user_timeout=4.0),
        everywhere=False,
    ),
    Detector(
        "nolinear",
        "pulsewire Policy(), no linear timeouts",
        Endpoint(
            name="nolinear",
            kind="pulsewire",
            policy=DEFAULT,
            socket_options=SocketOptions(linear_timeouts=False),
        ),
        everywhere=False,
    ),
    Detector(
        "reno",
        "pulsewire Policy(), congestion reno (opt-in)",
        Endpoint(
            name="reno",
            kind="pulsewire",
            policy=DEFAULT,
            socket_options=SocketOptions(congestion="reno"),
        ),
        everywhere=False,
    ),
    Detector(
        "wsdefault",
        "websockets ping 1/1, close_timeout 10 s (default)",
        Endpoint(name="wsdefault", kind="websockets", ping_interval=1.0, ping_timeout=1.0),
        everywhere=False,
        lossy=False,
    ),
)
BY_KEY = {d.key: d for d in DETECTORS}
SMOKE_KEYS = ("lan", "ka3", "ws")


# ------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    inject: Callable[[TwoHosts, Running], float]  #: does the fault; returns its time
    cap: float  #: give up waiting after this many seconds from the fault
    write_every: float | None = None
    all_detectors: bool = False  #: the ladder too


def _blackhole(hosts: TwoHosts, running: Running) -> float:
    hosts.blackhole()
    return time.monotonic()


def _freeze(hosts: TwoHosts, running: Running) -> float:
    running.peer.freeze()
    return time.monotonic()


def _crash_and_reboot(hosts: TwoHosts, running: Running) -> float:
    crashed_at = time.monotonic()
    hosts.reboot()
    return crashed_at


def _exit(hosts: TwoHosts, running: Running) -> float:
    running.peer.terminate()
    return time.monotonic()


SCENARIOS = (
    Scenario("idle", "idle blackhole", _blackhole, cap=16.0, all_detectors=True),
    Scenario("writing", "blackhole while writing", _blackhole, cap=10.0, write_every=0.1),
    Scenario("frozen", "frozen peer (SIGSTOP)", _freeze, cap=10.0),
    Scenario("reboot", "crash + reboot", _crash_and_reboot, cap=10.0),
    Scenario("fin", "graceful exit (FIN)", _exit, cap=5.0),
)
SMOKE_SCENARIOS = ("idle", "fin")
#: ``--scenarios`` key of the lossy link (the other keys are the fault scenarios').
LOSSY = "lossy"


@dataclass
class Outcome:
    """One detector in one run of one scenario."""

    seconds: float | None  #: from the fault to the verdict; None: not within the cap
    reason: str = ""
    source: str = ""


@dataclass
class Cell:
    outcomes: list[Outcome] = field(default_factory=list)

    def times(self) -> list[float | None]:
        return [o.seconds for o in self.outcomes]


def run_once(
    scenario: Scenario, detectors: Sequence[Detector], rng: random.Random
) -> dict[str, Outcome]:
    endpoints = [_with(d.endpoint, write_every=scenario.write_every) for d in detectors]
    with TwoHosts() as hosts:
        running = serve_and_watch(hosts, endpoints)
        time.sleep(rng.uniform(1.0, 2.0))  # settling, at a random phase
        early = running.observer.messages("dead")
        if early:
            raise RuntimeError(f"{scenario.label}: deaths before the fault: {early}")
        fault_at = scenario.inject(hosts, running)
        remaining = max(0.0, fault_at + scenario.cap - time.monotonic())
        with contextlib.suppress(TimeoutError):  # a detector that never notices is a result
            running.observer.wait_for("dead", remaining, count=len(detectors))
        outcomes = {d.key: Outcome(None) for d in detectors}
        for death in running.observer.messages("dead"):
            seconds = float(death["at"]) - fault_at
            outcomes[death["endpoint"]] = Outcome(
                seconds if seconds <= scenario.cap else None, death["reason"], death["source"]
            )
        return outcomes


def _with(endpoint: Endpoint, **changes: Any) -> Endpoint:
    return msgspec.structs.replace(endpoint, **changes)


# ------------------------------------------------------------------------- lossy link


@dataclass
class Lossy:
    connections: int
    seconds: float
    deaths: list[tuple[str, str, float]] = field(default_factory=list)  # reason, source, at
    exposure: float = 0.0  #: connection-seconds alive under loss
    stats: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate_per_hour(self) -> float:
        return 3600 * len(self.deaths) / self.exposure if self.exposure else math.nan

    @property
    def hours(self) -> float:
        return self.exposure / 3600


@dataclass
class LossyRun:
    """The lossy link under one congestion control: every detector's false deaths."""

    congestion: str  #: the hosts' default, which a socket has unless it switches
    cells: dict[str, Lossy]

    @property
    def linear_in_effect(self) -> bool:
        """Whether the default policy's sockets all had working linear timeouts."""
        rows = self.cells["default"].stats if "default" in self.cells else []
        read = [r for r in rows if "congestion" in r]
        return bool(read) and all(
            r.get("linear_timeouts") and r["congestion"] not in NEVER_THIN_CONGESTION for r in read
        )

    def socket_congestion(self, key: str) -> list[str]:
        """The congestion controls that detector ``key``'s surviving sockets read back."""
        cell = self.cells.get(key)
        rows = cell.stats if cell is not None else []
        return sorted({str(r["congestion"]) for r in rows if r.get("congestion")})

    def switched(self) -> dict[str, list[str]]:
        """Detectors whose sockets read back another congestion control than the hosts'."""
        found = {key: self.socket_congestion(key) for key in self.cells}
        return {key: seen for key, seen in found.items() if seen and seen != [self.congestion]}


HOST_CONGESTION = "host"


def run_lossy(
    detectors: Sequence[Detector], connections: int, seconds: float, congestion: str
) -> LossyRun:
    endpoints = [_with(d.endpoint, connections=connections) for d in detectors]
    results = {d.key: Lossy(connections, seconds) for d in detectors}
    with TwoHosts() as hosts:
        if congestion != HOST_CONGESTION:
            for host in (hosts.a, hosts.b):  # the namespaces' default, for every socket
                key = "net.ipv4.tcp_congestion_control"
                hosts.run(host, "sysctl", "-q", "-w", f"{key}={congestion}")
        default = hosts.run(hosts.a, "sysctl", "-n", "net.ipv4.tcp_congestion_control").strip()
        running = serve_and_watch(hosts, endpoints, within=60.0)
        time.sleep(1.5)
        hosts.lose(LOSS_PERCENT)
        started = time.monotonic()
        time.sleep(seconds)  # the measurement is what happens meanwhile
        hosts.lose(0)
        ended = time.monotonic()
        running.observer.send({"cmd": "stats", "id": 1})
        rows = running.observer.wait_for("stats", 15)[0]["connections"]
    for death in running.observer.messages("dead"):
        at = float(death["at"])
        if started <= at <= ended:
            results[death["endpoint"]].deaths.append((death["reason"], death["source"], at))
    for key, lossy in results.items():
        died = [at - started for _, _, at in lossy.deaths]
        lossy.exposure = sum(died) + (connections - len(died)) * (ended - started)
        lossy.seconds = ended - started
        lossy.stats = [row for row in rows if row["endpoint"] == key]
    return LossyRun(default or congestion, results)


def run_lossy_everywhere(
    detectors: Sequence[Detector], connections: int, seconds: float, congestions: Sequence[str]
) -> list[LossyRun]:
    """One lossy run per congestion control, all at once (each on its own pair of hosts)."""
    runs: dict[str, LossyRun] = {}
    errors: list[BaseException] = []

    def one(congestion: str) -> None:
        try:
            runs[congestion] = run_lossy(detectors, connections, seconds, congestion)
        except BaseException as error:  # reported below, in the main thread
            errors.append(error)

    threads = [threading.Thread(target=one, args=(c,)) for c in congestions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [runs[c] for c in congestions]


# ------------------------------------------------------------------------- report


def _seconds(value: float) -> str:
    return f"{value:.2f}"


def summarize(cell: Cell, cap: float) -> str:
    times = cell.times()
    if not times:
        return ""
    found = [t for t in times if t is not None]
    kinds: dict[str, int] = {}
    for o in cell.outcomes:
        if o.seconds is not None:
            tag = f"{o.reason.upper()} {'hb' if o.source == 'heartbeat' else o.source}"
            kinds[tag] = kinds.get(tag, 0) + 1
    how = ", ".join(k if n == len(found) else f"{k} ({n} runs)" for k, n in kinds.items())
    if not found:
        return f"not detected (> {cap:g} s)"
    missed = len(times) - len(found)
    if missed * 2 >= len(times):  # the median itself is censored
        return f"> {cap:g} / > {cap:g} ({missed}/{len(times)} runs not detected; {how})"
    median = statistics.median(t if t is not None else math.inf for t in times)
    worst = f"> {cap:g}" if missed else _seconds(max(found))
    return f"{_seconds(median)} / {worst} {how}"


def median_of(cell: Cell) -> float:
    times = cell.times()
    return statistics.median(t if t is not None else math.inf for t in times)


def worst_of(cell: Cell) -> float:
    return max((t if t is not None else math.inf) for t in cell.times())


def render(
    results: dict[str, dict[str, Cell]],
    lossy: Sequence[LossyRun],
    *,
    runs: int,
    command: str,
    scenarios: Sequence[Scenario],
    detectors: Sequence[Detector],
) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    v = versions()
    lines = [
        f"`{command}` — {now}; Linux {platform.release()} ({platform.machine()}), "
        f"Python {v['python']}, pulsewire {v['pulsewire']}, websockets {v['websockets']}; "
        f"{f'{runs} run(s) per cell; ' if scenarios else ''}two network namespaces joined by "
        "a veth pair "
        "(round trip well under 1 ms). `Policy()` is "
        f"`Policy(interval={DEFAULT.interval:g}, timeout={DEFAULT.timeout:g})`: "
        f"{DEFAULT.describe()}",
        "",
    ]
    if scenarios:  # none: the lossy link only (--scenarios lossy)
        lines += render_detection(results, scenarios, detectors)
    for run in lossy:
        lines += render_lossy(run, detectors)
    lines += targets(results, lossy, scenarios)
    return "\n".join(lines).rstrip() + "\n"


def render_detection(
    results: dict[str, dict[str, Cell]],
    scenarios: Sequence[Scenario],
    detectors: Sequence[Detector],
) -> list[str]:
    lines = [
        "### Detection time",
        "",
        "Seconds from the fault to the application being told, **median / max** over the "
        "runs, then the verdict (`hb`: the detector's own heartbeat or ping timeout; "
        "`kernel`: an error or end of stream from the socket). Blank: not run in that "
        "scenario.",
        "",
    ]
    headers = ["detector", *(s.label for s in scenarios)]
    rows = []
    for d in detectors:
        row = [d.label]
        for s in scenarios:
            cell = results.get(s.key, {}).get(d.key)
            row.append(summarize(cell, s.cap) if cell is not None else "")
        rows.append(row)
    return [*lines, markdown_table(headers, rows), ""]


def render_lossy(run: LossyRun, detectors: Sequence[Detector]) -> list[str]:
    any_cell = next(iter(run.cells.values()))
    switched = run.switched()
    default_switched = switched.get("default")
    linear = (
        "in effect (the `Policy()` sockets were switched from "
        f"{run.congestion} to {', '.join(default_switched)} and "
        "read `TCP_THIN_LINEAR_TIMEOUTS` back as on)"
        if run.linear_in_effect and default_switched
        else "in effect (the pulsewire sockets read `TCP_THIN_LINEAR_TIMEOUTS` back as on)"
        if run.linear_in_effect
        else f"**not** in effect ({run.congestion} never lets a stream count as thin)"
        if run.congestion in NEVER_THIN_CONGESTION
        else "not in effect"
    )
    labels = [BY_KEY[key].label for key in run.cells if key in switched]
    others = (
        f" Sockets switched from {run.congestion}: {', '.join(labels)}; the others keep it."
        if labels
        else ""
    )
    lines = [
        f"### Lossy link: false deaths, congestion control {run.congestion}",
        "",
        f"{LOSS_PERCENT} % random loss each way (nftables `numgen random`), "
        f"{any_cell.connections} connections per detector, {any_cell.seconds:.0f} s; "
        f"every death is false. Linear retransmission timeouts: {linear}.{others} The rate "
        "is per connection-hour alive under loss.",
        "",
    ]
    lossy_rows = []
    for d in detectors:
        cell = run.cells.get(d.key)
        if cell is None:
            continue
        reasons: dict[str, int] = {}
        for reason, source, _ in cell.deaths:
            tag = f"{reason.upper()} {'hb' if source == 'heartbeat' else source}"
            reasons[tag] = reasons.get(tag, 0) + 1
        alive = [r for r in cell.stats if r.get("alive")]
        extra = []
        if any("pings_sent" in r for r in alive):
            p99 = [r["rtt_p99"] for r in alive if r.get("rtt_p99") is not None]
            worst = [r["rtt_max"] for r in alive if r.get("rtt_max") is not None]
            timeouts = sorted({round(r["timeout"], 2) for r in alive})
            extra.append(
                f"{sum(r['pings_sent'] for r in alive)} pings, RTT p99 "
                f"{max(p99) * 1000:.0f} ms, max {max(worst):.2f} s, timeout in force "
                f"{timeouts} s"
                if p99 and worst
                else ""
            )
        if BY_KEY[d.key].endpoint.kind != "tcp":  # keepalive probes are not retransmissions
            retrans = sum(r.get("tcp_retransmits", 0) for r in alive)
            extra.append(f"{retrans} TCP retransmissions")
        lossy_rows.append(
            [
                d.label,
                f"{len(cell.deaths)}/{cell.connections}",
                f"{cell.hours:.2f}",
                _rate(cell),
                ", ".join(f"{k} ({n})" for k, n in reasons.items()) or "—",
                "; ".join(e for e in extra if e),
            ]
        )
    headers = [
        "detector",
        "false deaths",
        "connection-hours",
        "per connection-hour",
        "verdicts",
        "surviving connections (totals)",
    ]
    return [*lines, markdown_table(headers, lossy_rows), ""]


def _rate(cell: Lossy) -> str:
    if not cell.deaths:
        # No event in h hours: the 95 % upper bound of a Poisson rate is 3 / h.
        return f"0 (< {_per_hour(3 / cell.hours)} at 95 %)" if cell.hours else "—"
    return _per_hour(cell.rate_per_hour)


def _per_hour(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}"


def targets(
    results: dict[str, dict[str, Cell]], lossy: Sequence[LossyRun], scenarios: Sequence[Scenario]
) -> list[str]:
    lines = ["### Targets", ""]
    # 1. The LAN preset, every failure scenario.
    lan = [(s, results[s.key]["lan"]) for s in scenarios if "lan" in results.get(s.key, {})]
    if lan:
        failing = [
            f"{s.label} ({_fmt(median_of(c))} / {_fmt(worst_of(c))} s)"
            for s, c in lan
            if not (median_of(c) < LAN_TARGET_MEDIAN and worst_of(c) < LAN_TARGET_WORST)
        ]
        worst_median = max(lan, key=lambda sc: median_of(sc[1]))
        worst_max = max(lan, key=lambda sc: worst_of(sc[1]))
        verdict = "**PASS**" if not failing else "**FAIL**: " + "; ".join(failing)
        lines.append(
            f"- `Policy.lan()` detects every failure scenario in under {LAN_TARGET_MEDIAN:g} s "
            f"median and {LAN_TARGET_WORST:g} s worst: {verdict} (slowest median: "
            f"{worst_median[0].label}, {_fmt(median_of(worst_median[1]))} s; slowest run: "
            f"{worst_max[0].label}, {_fmt(worst_of(worst_max[1]))} s; "
            f"scenarios run: {len(lan)}/{len(SCENARIOS)})."
        )
    idle = results.get("idle", {})
    for run in lossy:
        cells = run.cells
        where = f"congestion control {run.congestion}"
        # 2. The default policy never dies of loss alone where linear timeouts apply: on
        # this host's sockets as they are, or under BBR with the opt-in switch to reno.
        subject = "default" if run.linear_in_effect else "reno"
        if subject in cells:
            mine = cells[subject]
            label = BY_KEY[subject].label.removeprefix("pulsewire ")
            verdict = "**PASS**" if not mine.deaths else "**FAIL**"
            lines.append(
                f"- `{label}` has no false death at {LOSS_PERCENT} % loss where linear "
                f"timeouts apply ({where}): {verdict}, {len(mine.deaths)} in "
                f"{mine.hours:.2f} connection-hours"
                + (
                    f" (rate below {_per_hour(3 / mine.hours)} an hour at 95 %)."
                    if not mine.deaths
                    else "."
                )
            )
        if subject != "default" and "default" in cells:
            mine = cells["default"]
            lines.append(
                f"- Reported, not a target: `Policy()` with the default socket options, where "
                f"linear timeouts do not apply ({where}, no opt-in): {len(mine.deaths)} false "
                f"deaths in {mine.hours:.2f} connection-hours (see docs/tuning.md)."
            )
        # 3. Each preset against kernel keepalive at the same false-death rate.
        for preset in ("default", "lan"):
            if preset in cells and preset in idle:
                lines.append(_speedup(preset, cells, idle, where))
    return [*lines, ""]


def _speedup(preset: str, cells: dict[str, Lossy], idle: dict[str, Cell], where: str) -> str:
    mine = cells[preset]
    rungs = [c for c in LADDER if f"ka{c}" in cells and f"ka{c}" in idle]
    matched = next((c for c in rungs if cells[f"ka{c}"].rate_per_hour <= mine.rate_per_hour), None)
    label = BY_KEY[preset].label.removeprefix("pulsewire ")
    ladder = ", ".join(
        f"1/1/{c}: {len(cells[f'ka{c}'].deaths)} in {cells[f'ka{c}'].hours:.2f} h" for c in rungs
    )
    if matched is None:
        return (
            f"- `{label}` vs kernel keepalive at the same false-death rate ({where}): no rung "
            f"had a rate as low as its {len(mine.deaths)} in {mine.hours:.2f} h ({ladder}): "
            "keepalive cannot match it within the ladder (not decided)."
        )
    ka_time, my_time = median_of(idle[f"ka{matched}"]), median_of(idle[preset])
    ratio = ka_time / my_time
    verdict = "**PASS**" if ratio >= SPEEDUP_TARGET else "**FAIL**"
    rung = cells[f"ka{matched}"]
    if not rung.deaths and rung.hours < DECIDING_HOURS:
        verdict = (
            f"**not decided** (1/1/{matched} matched on zero false deaths in only "
            f"{rung.hours:.2f} connection-hours, which bounds its rate below "
            f"{_per_hour(3 / rung.hours)} an hour: run with `--lossy-seconds 900`)"
        )
    return (
        f"- `{label}` at least {SPEEDUP_TARGET:g}x faster than kernel keepalive at the same "
        f"false-death rate ({where}): {verdict}, {ratio:.1f}x. It had {len(mine.deaths)} "
        f"false deaths in {mine.hours:.2f} connection-hours of {LOSS_PERCENT} % loss; the "
        f"lowest keepalive rung with no higher rate was 1/1/{matched} ({ladder}), whose "
        f"idle-blackhole median is {_fmt(ka_time)} s against {_fmt(my_time)} s."
    )


def _fmt(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.2f}"


def write_docs(path: Path, text: str) -> None:
    page = path.read_text()
    if DOCS_BEGIN not in page or DOCS_END not in page:
        raise SystemExit(f"{path} lacks the markers {DOCS_BEGIN!r} ... {DOCS_END!r}")
    before, rest = page.split(DOCS_BEGIN, 1)
    _, after = rest.split(DOCS_END, 1)
    # The page's own headings are ##; the results' ### headings stay below them.
    path.write_text(f"{before}{DOCS_BEGIN}\n\n{text}\n{DOCS_END}{after}")


# ------------------------------------------------------------------------- raw measurements


def dump(results: dict[str, dict[str, Cell]], lossy: Sequence[LossyRun]) -> dict[str, Any]:
    """The raw measurements, as ``--json`` writes them and ``--report-from`` reads them."""
    return {
        "scenarios": {
            s: {k: [vars(o) for o in c.outcomes] for k, c in cells.items()}
            for s, cells in results.items()
        },
        "lossy": {
            run.congestion: {
                k: {
                    "connections": v.connections,
                    "seconds": v.seconds,
                    "deaths": v.deaths,
                    "exposure": v.exposure,
                    "stats": v.stats,
                }
                for k, v in run.cells.items()
            }
            for run in lossy
        },
    }


def report_from(path: Path) -> str:
    """The report of the measurements that ``--json`` saved in ``path``, rendered again.

    Scenarios and detectors are those the file has results for; the header names this
    command and this machine.
    """
    raw = json.loads(path.read_text())
    results = {
        s: {k: Cell([Outcome(**o) for o in outcomes]) for k, outcomes in cells.items()}
        for s, cells in raw["scenarios"].items()
    }
    lossy = [
        LossyRun(
            congestion,
            {
                k: Lossy(
                    c["connections"],
                    c["seconds"],
                    deaths=[(reason, source, at) for reason, source, at in c["deaths"]],
                    exposure=c["exposure"],
                    stats=c["stats"],
                )
                for k, c in cells.items()
            },
        )
        for congestion, cells in raw["lossy"].items()
    ]
    keys = {k for cells in [*results.values(), *(run.cells for run in lossy)] for k in cells}
    runs = max((len(c.outcomes) for cells in results.values() for c in cells.values()), default=0)
    return render(
        results,
        lossy,
        runs=runs,
        command=f".venv/bin/python benchmarks/detection.py --report-from {path}",
        scenarios=[s for s in SCENARIOS if s.key in results],
        detectors=[d for d in DETECTORS if d.key in keys],
    )


# ------------------------------------------------------------------------- main


def _keys(text: str) -> list[str]:
    return [key.strip() for key in text.split(",") if key.strip()]


def _choose(kind: str, given: list[str] | None, known: Sequence[str]) -> list[str] | None:
    if given is None:
        return None
    unknown = [key for key in given if key not in known]
    if unknown or not given:
        raise SystemExit(
            f"--{kind}: unknown {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(known)}"
        )
    return given


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one run, fewest cells; no writes")
    parser.add_argument("--runs", type=int, default=5, help="runs per scenario (default 5)")
    parser.add_argument(
        "--lossy-seconds", type=float, default=900.0, help="lossy link duration (default 900)"
    )
    parser.add_argument(
        "--lossy-connections",
        type=int,
        default=20,
        help="lossy link: connections per detector (default 20)",
    )
    parser.add_argument(
        "--congestion",
        type=_keys,
        default=[HOST_CONGESTION],
        help="congestion controls for the lossy link, comma-separated ('host': the host's "
        "default; others become the namespaces' default, e.g. reno)",
    )
    parser.add_argument(
        "--scenarios",
        type=_keys,
        default=None,
        metavar="KEYS",
        help="only these, comma-separated: "
        f"{', '.join([*(s.key for s in SCENARIOS), LOSSY])} (default: all); a partial "
        "selection writes nothing",
    )
    parser.add_argument(
        "--detectors",
        type=_keys,
        default=None,
        metavar="KEYS",
        help=f"only these, comma-separated: {', '.join(BY_KEY)} (default: all); a partial "
        "selection writes nothing",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to update")
    parser.add_argument("--docs", type=Path, default=DOCS, help="docs page to update")
    parser.add_argument("--no-write", action="store_true", help="print the report only")
    parser.add_argument("--json", type=Path, help="also dump the raw measurements here")
    parser.add_argument(
        "--report-from",
        type=Path,
        metavar="JSON",
        help="measure nothing: print the report of the raw measurements a --json dump holds",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for the settling times")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    if args.report_from is not None:
        text = report_from(args.report_from)
        print(text)
        return text
    reason = netns_available()
    if reason is not None:
        raise SystemExit(f"detection needs network namespaces: {reason}")
    scenario_keys = _choose("scenarios", args.scenarios, [*(s.key for s in SCENARIOS), LOSSY])
    detector_keys = _choose("detectors", args.detectors, list(BY_KEY))
    partial = scenario_keys is not None or detector_keys is not None
    with_lossy = scenario_keys is None or LOSSY in scenario_keys
    if args.smoke:
        args.runs, args.lossy_seconds, args.lossy_connections = 1, 4.0, 2
        scenarios = [s for s in SCENARIOS if s.key in SMOKE_SCENARIOS]
        detectors = [BY_KEY[k] for k in SMOKE_KEYS]
    else:
        scenarios, detectors = list(SCENARIOS), list(DETECTORS)
    if scenario_keys is not None:
        scenarios = [s for s in SCENARIOS if s.key in scenario_keys]
    if detector_keys is not None:
        detectors = [d for d in DETECTORS if d.key in detector_keys]
    rng = random.Random(args.seed)
    started = time.monotonic()

    results: dict[str, dict[str, Cell]] = {}
    for scenario in scenarios:
        chosen = [d for d in detectors if d.everywhere or scenario.all_detectors]
        cells = results.setdefault(scenario.key, {d.key: Cell() for d in chosen})
        for run in range(args.runs):
            outcomes = run_once(scenario, chosen, rng)
            for key, outcome in outcomes.items():
                cells[key].outcomes.append(outcome)
            shown = ", ".join(
                f"{k} {'-' if o.seconds is None else f'{o.seconds:.2f}'} {o.reason}"
                for k, o in outcomes.items()
            )
            print(f"[{time.monotonic() - started:5.0f} s] {scenario.key} run {run + 1}: {shown}")

    lossy_detectors = [d for d in detectors if d.lossy]
    lossy = (
        run_lossy_everywhere(
            lossy_detectors, args.lossy_connections, args.lossy_seconds, args.congestion
        )
        if with_lossy and lossy_detectors
        else []
    )
    for lossy_run in lossy:
        print(
            f"[{time.monotonic() - started:5.0f} s] lossy ({lossy_run.congestion}): "
            + ", ".join(f"{k} {len(v.deaths)}/{v.connections}" for k, v in lossy_run.cells.items())
        )
        for key, cell in lossy_run.cells.items():
            read = [r for r in cell.stats if "congestion" in r]
            congestion = {
                c: sum(r["congestion"] == c for r in read) for c in lossy_run.socket_congestion(key)
            }
            linear = sum(1 for r in read if r.get("linear_timeouts"))
            retransmits = sum(r.get("tcp_retransmits", 0) for r in read)
            print(
                f"    {key}: {len(read)} surviving sockets read back congestion {congestion}, "
                f"TCP_THIN_LINEAR_TIMEOUTS on in {linear}; {retransmits} TCP retransmissions; "
                f"{cell.hours:.2f} connection-hours"
            )

    command = "sudo .venv/bin/python benchmarks/detection.py" + (" --smoke" if args.smoke else "")
    if not args.smoke and args.runs != 5:
        command += f" --runs {args.runs}"
    if args.congestion != [HOST_CONGESTION]:
        command += f" --congestion {','.join(args.congestion)}"
    if scenario_keys is not None:
        command += f" --scenarios {','.join(scenario_keys)}"
    if detector_keys is not None:
        command += f" --detectors {','.join(detector_keys)}"
    if not args.smoke and args.lossy_connections != 20:
        command += f" --lossy-connections {args.lossy_connections}"
    if not args.smoke and args.lossy_seconds != 900:
        command += f" --lossy-seconds {args.lossy_seconds:g}"
    text = render(
        results,
        lossy,
        runs=args.runs,
        command=command,
        scenarios=scenarios,
        detectors=detectors,
    )
    print()
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps(dump(results, lossy), indent=1))
    if not (args.smoke or args.no_write or partial):
        replace_section(args.results, "detection", text, RESULTS_HEADER)
        write_docs(args.docs, text)
        print(f"wrote {args.results} (## detection) and {args.docs}")
    elif partial and not (args.smoke or args.no_write):
        print("a partial selection (--scenarios, --detectors): nothing written")
    return text


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
