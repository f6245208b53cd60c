"""detection: how fast pulsewire, tuned kernel keepalive and websockets notice real network
faults, and how often each one convicts a live peer on clean and lossy links.

Two Linux network namespaces joined by a veth pair (:class:`pulsewire.cli.netns.TwoHosts`,
root only): host a runs the observers, host b the peers, all as ``lab/endpoints.py``
processes (the fault lab this benchmark shares with ``tests/faults``), so every detector
faces the same fault at the same moment on the same wire. Faults are real packet faults
(nftables inside the namespaces), not loopback tricks.

**Faults** (on a clean link; each run on fresh hosts):

- **idle blackhole**: every packet dropped, both ways, on connections that carry no
  application data (a pulled cable, a powered-off host, a firewall gone silent);
- **blackhole while writing**: the same, while the observer sends a message every 100 ms
  (the peer echoes it): the retransmission path, where kernel keepalive never runs;
- **frozen peer**: SIGSTOP; the peer's kernel still ACKs everything;
- **crash + reboot**: the peer's host loses its network, its processes die, and it comes
  back on the same address with an empty TCP stack; the next segment draws a RST;
- **graceful exit**: the peer process exits without closing; its kernel sends FIN.

**Links** (nobody dies: every death is a false death): ``clean``; ``loss1`` and ``loss10``,
1 % and 10 % of packets dropped at random each way on arrival (loss on the wire);
``local10``, 10 % dropped in each sender's own output hook (a host firewall, a rate limit,
a full conntrack table: the sending TCP sees a failed transmit, not loss): lossy from the
connections' first seconds. ``turn10``: 10 % loss on the wire after ``TURN_AFTER`` (120) s
of clean link, when adaptive policies have settled on the clean link's timeout: the hard
case for them, a path that turns lossy (reported, not a target).

**Detectors** (each tuned as tightly as its API allows, and used on both ends):

- pulsewire ``Policy.auto()`` (the recommended policy: adaptive, 1 s pings),
  ``Policy()`` (1 s / 3 s) and ``Policy.lan()`` (0.2 s / 0.8 s), with the default
  ``SocketOptions()`` (linear retransmission timeouts, the RTO capped at 1 s, no
  ``TCP_USER_TIMEOUT``); on the idle blackhole and the links only, ``Policy()`` without
  linear timeouts and with ``SocketOptions(congestion="reno")``, the opt-in that makes
  them work under BBR;
- Linux kernel keepalive on a plain socket: ``SO_KEEPALIVE``, ``TCP_KEEPIDLE=1``,
  ``TCP_KEEPINTVL=1``, ``TCP_KEEPCNT=3`` (whole seconds: this is as low as it goes), and
  the same plus ``TCP_USER_TIMEOUT`` = 3 s (Linux then drops after two unanswered probes)
  or, on the idle blackhole and the links, 4 s (which keeps the count);
- websockets (asyncio API) with ``ping_interval=1, ping_timeout=1, close_timeout=1``
  (with its default ``close_timeout=10`` a client that timed out its ping waits up to 10 s
  more for the server to close TCP before the application is told: measured once, in the
  idle blackhole, as a separate row);
- a ladder of keepalive probe counts, ``1/1/c`` for c in 5, 8, 12 (idle blackhole and
  links only), to compare at equal false-death rates.

Linear timeouts only work where the congestion control sets a slow-start threshold (cubic,
reno; not BBR). Only the detector that opts in switches its BBR sockets to reno; the others
keep the hosts' congestion control. ``--congestion host,reno`` runs every link again, at
the same time on other hosts, with reno as the namespaces' default.

Detection time is measured from the fault (the nft rule in place, the signal sent, the
crash begun) to the moment the application is told (``wait_dead()`` returns, a read
fails, websockets' connection is closed), on ``time.monotonic()``, which all processes
share. Each fault is run ``--runs`` times, each run on fresh hosts whose connections are
at least ``FAULT_SETTLE`` (120) s old when it strikes: all runs' hosts come up first (a
few at a time), then the faults strike one after another, a random fraction of a second
into their turn (so that ping and probe phases differ). A detector that dies before its
fault (a false death on the clean link, say from the CPU load of bringing hosts up) is
not timed in that run; the report counts such runs as void. The tables give the median
and the maximum. A link's false-death rate is the number of connections that died per
connection-hour they were alive (a connection that died stops counting).

Comparisons, precisely:

- against websockets: the ratio of its median to the detector's, per fault, on the same
  runs; "at equal false deaths" when the detector's rate is no higher than websockets' on
  every link;
- against kernel keepalive: for a pulsewire preset P, the *matched* keepalive is the lowest
  rung 1/1/c (c = 3, 5, 8, 12) whose false-death rate at 10 % loss is no higher than P's;
  the speed-up is its idle-blackhole median divided by P's (the idle blackhole is
  keepalive's best case). A match on zero false deaths in fewer than ``DECIDING_HOURS``
  connection-hours is reported as not decided.

Usage (root)::

    .venv/bin/python benchmarks/detection.py            # about 30 minutes; writes both reports
    .venv/bin/python benchmarks/detection.py --congestion host,reno   # both congestion controls
    .venv/bin/python benchmarks/detection.py --smoke    # one run, fewest cells, about a
                                                        # minute; prints, writes nothing
    # one detector, the 10 % links only, 100 connections for 1000 s (27.8 connection-hours);
    # a partial selection prints the report and writes nothing
    .venv/bin/python benchmarks/detection.py --scenarios loss10,local10 --detectors auto \\
        --link-connections 100 --link-seconds 1000

    # any user, no namespaces: the report of a run's raw measurements (saved with --json),
    # rendered again by this version of the report code; prints it, writes nothing
    .venv/bin/python benchmarks/detection.py --report-from raw.json

Results go to the ``## detection`` section of ``benchmarks/RESULTS.md`` (the claim, the
summary table, the targets) and between the markers of ``docs/detection.md`` (every table).
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
from _common import (
    claim_section,
    git_revision,
    markdown_table,
    measured_on,
    replace_section,
    versions,
)
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

LAN_TARGET_MEDIAN = 1.0
LAN_TARGET_WORST = 1.5
AUTO_TARGET_MEDIAN = 1.2  #: the recommended policy on a clean link, idle/writing/frozen
WEBSOCKETS_SPEEDUP = 2.0  #: ... and at least this much faster than websockets 1/1
AUTO_SAFE_HOURS = 2.0  #: connection-hours of each 10 % link with no false death
DEFAULT_LOCAL_HOURS = 1.0  #: the same for Policy() on the sender-local drops
SPEEDUP_TARGET = 3.0
LADDER = (3, 5, 8, 12)
#: A rung matched on *zero* false deaths is only as good as the sample: a zero count in h
#: hours bounds a rate below 3/h (95 %). Below this many connection-hours that bound is
#: too loose to tell the rungs apart (1/1/5 dies about once an hour here), so the
#: speed-up target is reported as not decided rather than passed or failed.
DECIDING_HOURS = 3.0
#: A connection's age at the fault, at least: long-lived, as the connections pulsewire
#: watches are. An adaptive policy trusts a clean link fully after about 50 answers (about
#: 90 s of pings; until its first 5, it applies its ceiling).
FAULT_SETTLE = 120.0
#: Seconds between the connections being up and the loss starting on a lossy link: the
#: link is lossy from the connections' first seconds (adaptive policies learn it so).
LOSSY_AFTER = 1.5
#: ... and on a link that turns lossy: clean long enough for adaptive policies to have
#: settled on the clean link's timeout, the hard case for them.
TURN_AFTER = 120.0
SMOKE_SETTLE = 1.0


# ------------------------------------------------------------------------- detectors


@dataclass(frozen=True)
class Detector:
    key: str  #: endpoint name (short, unique)
    label: str  #: for the tables
    endpoint: Endpoint
    everywhere: bool = True  #: in every fault, or only the idle blackhole and the links
    links: bool = True  #: on the links


def keepalive(count: int, *, everywhere: bool) -> Detector:
    return Detector(
        f"ka{count}",
        f"keepalive 1/1/{count}",
        Endpoint(name=f"ka{count}", kind="tcp", keepalive=(1, 1, count)),
        everywhere=everywhere,
    )


AUTO = Policy.auto()
DEFAULT = Policy()
DETECTORS = (
    Detector(
        "auto", "pulsewire Policy.auto()", Endpoint(name="auto", kind="pulsewire", policy=AUTO)
    ),
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
        links=False,
    ),
)
BY_KEY = {d.key: d for d in DETECTORS}
SMOKE_KEYS = ("auto", "lan", "ka3", "ws")
#: The summary's rows: the recommended policy, the other presets, what users would pick.
SUMMARY_KEYS = ("auto", "default", "lan", "ka3", "ka3uto", "ws")


def short(key: str) -> str:
    """A detector's label without the library's name: ``Policy.auto()``."""
    return BY_KEY[key].label.removeprefix("pulsewire ")


# ------------------------------------------------------------------------- faults


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
#: The faults where a detector's own timer decides (RST and FIN: the kernel tells everyone).
SILENT = ("idle", "writing", "frozen")


@dataclass
class Outcome:
    """One detector in one run of one fault."""

    seconds: float | None  #: from the fault to the verdict; None: not within the cap
    reason: str = ""
    source: str = ""


@dataclass
class Cell:
    outcomes: list[Outcome] = field(default_factory=list)
    #: runs in which it died before the fault (a false death on the clean link): not timed
    void: int = 0

    def times(self) -> list[float | None]:
        return [o.seconds for o in self.outcomes]


@dataclass(frozen=True)
class Slot:
    """One run of one fault: its own hosts, and its own moment to strike."""

    scenario: Scenario
    detectors: tuple[Detector, ...]
    offset: float  #: seconds after the schedule's start


#: Host pairs brought up at a time: starting more at once starves the heartbeats of those
#: already up of CPU (a LAN-preset peer convicted a starved observer in a trial run).
BRING_UP = 2


class Schedule:
    """Brings every slot's hosts up (a few at a time), then starts the clock: the first
    fault strikes ``settle`` s after the last hosts are up."""

    def __init__(self, slots: int, settle: float) -> None:
        self.bring_up = threading.Semaphore(BRING_UP)
        self._waiting = slots
        self._settle = settle
        self._lock = threading.Lock()
        self._go = threading.Event()
        self._start = 0.0

    def up(self) -> None:
        """One slot's hosts are up (or failed to come up)."""
        with self._lock:
            self._waiting -= 1
            if self._waiting == 0:
                self._start = time.monotonic() + self._settle
                self._go.set()

    def start(self) -> float:
        """The schedule's start, once every slot is up."""
        self._go.wait()
        return self._start


def plan_faults(
    scenarios: Sequence[Scenario],
    detectors: Sequence[Detector],
    runs: int,
    rng: random.Random,
) -> list[Slot]:
    """Every run of every fault, one after another: each a random fraction of a second into
    its turn (so that ping and probe phases differ), and only after the previous fault's
    cap has passed (one fault at a time)."""
    slots, at = [], 0.0
    for _ in range(runs):
        for scenario in scenarios:
            chosen = tuple(d for d in detectors if d.everywhere or scenario.all_detectors)
            at += rng.random()
            slots.append(Slot(scenario, chosen, at))
            at += scenario.cap + 1.0
    return slots


def run_slot(slot: Slot, schedule: Schedule) -> dict[str, Outcome | None]:
    """Each detector's outcome; None for one that died before the fault."""
    scenario = slot.scenario
    endpoints = [_with(d.endpoint, write_every=scenario.write_every) for d in slot.detectors]
    with TwoHosts() as hosts:
        try:
            with schedule.bring_up:
                running = serve_and_watch(hosts, endpoints, within=120.0)
        finally:
            schedule.up()
        time.sleep(max(0.0, schedule.start() + slot.offset - time.monotonic()))
        early = {death["endpoint"] for death in running.observer.messages("dead")}
        fault_at = scenario.inject(hosts, running)
        remaining = max(0.0, fault_at + scenario.cap - time.monotonic())
        with contextlib.suppress(TimeoutError):  # a detector that never notices is a result
            running.observer.wait_for("dead", remaining, count=len(slot.detectors))
        outcomes: dict[str, Outcome | None] = {d.key: Outcome(None) for d in slot.detectors}
        for death in running.observer.messages("dead"):
            seconds = float(death["at"]) - fault_at
            outcomes[death["endpoint"]] = Outcome(
                seconds if seconds <= scenario.cap else None, death["reason"], death["source"]
            )
        for key in early:
            outcomes[key] = None
        return outcomes


def run_faults(slots: Sequence[Slot], settle: float, started: float) -> dict[str, dict[str, Cell]]:
    """Every slot at once, each on its own hosts in its own thread."""
    results: dict[str, dict[str, Cell]] = {}
    for slot in slots:
        results.setdefault(slot.scenario.key, {d.key: Cell() for d in slot.detectors})
    schedule = Schedule(len(slots), settle)
    found: dict[int, dict[str, Outcome | None]] = {}
    errors: list[BaseException] = []

    def one(index: int, slot: Slot) -> None:
        try:
            found[index] = outcomes = run_slot(slot, schedule)
        except BaseException as error:  # reported below, in the main thread
            errors.append(error)
            return
        shown = ", ".join(f"{k} {_shown(o)}" for k, o in outcomes.items())
        _progress(started, f"{slot.scenario.key}: {shown}")

    threads = [threading.Thread(target=one, args=step) for step in enumerate(slots)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    for index, slot in enumerate(slots):  # in plan order: run 1 of every fault first
        for key, outcome in found[index].items():
            cell = results[slot.scenario.key][key]
            if outcome is None:
                cell.void += 1
            else:
                cell.outcomes.append(outcome)
    return results


def _shown(outcome: Outcome | None) -> str:
    if outcome is None:
        return "died before the fault"
    return "-" if outcome.seconds is None else f"{outcome.seconds:.2f} {outcome.reason}"


def _with(endpoint: Endpoint, **changes: Any) -> Endpoint:
    return msgspec.structs.replace(endpoint, **changes)


# ------------------------------------------------------------------------- links


@dataclass(frozen=True)
class Link:
    key: str
    label: str
    percent: int  #: of the packets dropped each way
    local: bool = False  #: dropped in the sender's own output hook, not on the wire
    turns: bool = False  #: clean for ``TURN_AFTER`` s first (else lossy from the start)

    def degrade(self, hosts: TwoHosts, percent: int) -> None:
        if self.percent:
            (hosts.drop_outgoing if self.local else hosts.lose)(percent)


LINKS = (
    Link("clean", "clean", 0),
    Link("loss1", "1 % loss", 1),
    Link("loss10", "10 % loss", 10),
    Link("local10", "10 % sender-local drops", 10, local=True),
    Link("turn10", "turning to 10 % loss", 10, turns=True),
)
LINK_BY_KEY = {link.key: link for link in LINKS}
#: The link of the keepalive ladder, and of the "no false death where linear timeouts
#: apply" target: loss on the wire, which every detector faces alike.
LADDER_LINK = "loss10"
SMOKE_LINKS = ("loss10",)
HOST_CONGESTION = "host"


@dataclass
class LinkCell:
    """One detector's connections on one link."""

    connections: int
    seconds: float
    deaths: list[tuple[str, str, float]] = field(default_factory=list)  # reason, source, at
    exposure: float = 0.0  #: connection-seconds alive on the link
    stats: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate_per_hour(self) -> float:
        return 3600 * len(self.deaths) / self.exposure if self.exposure else math.nan

    @property
    def hours(self) -> float:
        return self.exposure / 3600


@dataclass
class LinkRun:
    """One link under one congestion control: every detector's false deaths."""

    link: Link
    congestion: str  #: the hosts' default, which a socket has unless it switches
    cells: dict[str, LinkCell]
    clean_for: float = LOSSY_AFTER  #: seconds of clean link before the loss started

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


def run_link(
    link: Link,
    detectors: Sequence[Detector],
    connections: int,
    seconds: float,
    congestion: str,
    clean_for: float,
) -> LinkRun:
    endpoints = [_with(d.endpoint, connections=connections) for d in detectors]
    results = {d.key: LinkCell(connections, seconds) for d in detectors}
    with TwoHosts() as hosts:
        if congestion != HOST_CONGESTION:
            for host in (hosts.a, hosts.b):  # the namespaces' default, for every socket
                key = "net.ipv4.tcp_congestion_control"
                hosts.run(host, "sysctl", "-q", "-w", f"{key}={congestion}")
        default = hosts.run(hosts.a, "sysctl", "-n", "net.ipv4.tcp_congestion_control").strip()
        running = serve_and_watch(hosts, endpoints, within=60.0)
        time.sleep(clean_for)
        early = running.observer.messages("dead")
        if early:
            raise RuntimeError(f"{link.label}: deaths on the clean link before it: {early}")
        link.degrade(hosts, link.percent)
        started = time.monotonic()
        time.sleep(seconds)  # the measurement is what happens meanwhile
        link.degrade(hosts, 0)
        ended = time.monotonic()
        running.observer.send({"cmd": "stats", "id": 1})
        rows = running.observer.wait_for("stats", 15)[0]["connections"]
    for death in running.observer.messages("dead"):
        at = float(death["at"])
        if started <= at <= ended:
            results[death["endpoint"]].deaths.append((death["reason"], death["source"], at))
    for key, cell in results.items():
        died = [at - started for _, _, at in cell.deaths]
        cell.exposure = sum(died) + (connections - len(died)) * (ended - started)
        cell.seconds = ended - started
        cell.stats = [row for row in rows if row["endpoint"] == key]
    return LinkRun(link, default or congestion, results, clean_for)


def run_links(
    links: Sequence[Link],
    detectors: Sequence[Detector],
    connections: int,
    seconds: float,
    congestions: Sequence[str],
    smoke: bool = False,
) -> list[LinkRun]:
    """Every link under every congestion control, all at once (each on its own hosts)."""
    plan = [(link, congestion) for congestion in congestions for link in links]
    runs: dict[tuple[str, str], LinkRun] = {}
    errors: list[BaseException] = []

    def one(link: Link, congestion: str) -> None:
        try:
            clean_for = SMOKE_SETTLE if smoke else TURN_AFTER if link.turns else LOSSY_AFTER
            runs[link.key, congestion] = run_link(
                link, detectors, connections, seconds, congestion, clean_for
            )
        except BaseException as error:  # reported below, in the main thread
            errors.append(error)

    threads = [threading.Thread(target=one, args=step) for step in plan]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [runs[link.key, congestion] for link, congestion in plan]


def by_congestion(runs: Sequence[LinkRun]) -> dict[str, dict[str, LinkRun]]:
    """The runs as ``{congestion: {link key: run}}``, in the order they were run."""
    found: dict[str, dict[str, LinkRun]] = {}
    for run in runs:
        found.setdefault(run.congestion, {})[run.link.key] = run
    return found


# ------------------------------------------------------------------------- report


def _seconds(value: float) -> str:
    return f"{value:.2f}"


def _fmt(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.2f}"


def _per_hour(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}"


def _verdict_tag(reason: str, source: str) -> str:
    return f"{reason.upper()} {'hb' if source == 'heartbeat' else source}"


def summarize(cell: Cell, cap: float) -> str:
    text = _summarize_times(cell, cap)
    if cell.void:
        text += f" ({cell.void} run(s) void: died before the fault)"
    return text


def _summarize_times(cell: Cell, cap: float) -> str:
    times = cell.times()
    if not times:
        return ""
    found = [t for t in times if t is not None]
    kinds: dict[str, int] = {}
    for o in cell.outcomes:
        if o.seconds is not None:
            tag = _verdict_tag(o.reason, o.source)
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


def deaths_text(cell: LinkCell) -> str:
    """``0 in 5.00 h`` or ``3 in 4.80 h (0.62/h)``."""
    text = f"{len(cell.deaths)} in {cell.hours:.2f} h"
    return f"{text} ({_per_hour(cell.rate_per_hour)}/h)" if cell.deaths else text


def _rate(cell: LinkCell) -> str:
    if not cell.deaths:
        # No event in h hours: the 95 % upper bound of a Poisson rate is 3 / h.
        return f"0 (< {_per_hour(3 / cell.hours)} at 95 %)" if cell.hours else "—"
    return _per_hour(cell.rate_per_hour)


@dataclass
class Report:
    """Everything measured, and what the report says about it."""

    results: dict[str, dict[str, Cell]]
    links: list[LinkRun]
    scenarios: list[Scenario]
    detectors: list[Detector]
    runs: int
    command: str

    def cell(self, scenario: str, key: str) -> Cell | None:
        return self.results.get(scenario, {}).get(key)

    def congestions(self) -> dict[str, dict[str, LinkRun]]:
        return by_congestion(self.links)

    def websockets_ratio(self, key: str) -> tuple[float, str] | None:
        """The smallest ratio, over the silent faults, of websockets' median to ``key``'s,
        and the fault it was measured on; None without both on some fault."""
        ratios = []
        for scenario in SILENT:
            mine, theirs = self.cell(scenario, key), self.cell(scenario, "ws")
            if mine is not None and theirs is not None and mine.outcomes and theirs.outcomes:
                ratios.append((median_of(theirs) / median_of(mine), scenario))
        return min(ratios) if ratios else None

    def no_more_deaths_than_websockets(self, key: str) -> bool | None:
        """Whether ``key``'s false-death rate is no higher than websockets' on every link run
        (None when no link ran both)."""
        both = [run for run in self.links if key in run.cells and "ws" in run.cells]
        if not both:
            return None
        return all(
            len(run.cells[key].deaths) == 0
            or run.cells[key].rate_per_hour <= run.cells["ws"].rate_per_hour
            for run in both
        )


def render(report: Report) -> str:
    """The full report: docs/detection.md, and what the script prints."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    v = versions()
    lines = [
        f"`{report.command}` — {now}; Linux {platform.release()} ({platform.machine()}), "
        f"Python {v['python']}, pulsewire {v['pulsewire']}, websockets {v['websockets']}; "
        f"{f'{report.runs} run(s) per fault; ' if report.scenarios else ''}two network "
        "namespaces joined by a veth pair (round trip well under 1 ms). "
        f"`Policy.auto()`: {AUTO.describe()} `Policy()`: {DEFAULT.describe()}",
        "",
    ]
    summary = render_summary(report)
    if summary:
        lines += ["### Summary", "", summary, ""]
    if report.scenarios:  # none: links only
        lines += render_detection(report)
    for run in report.links:
        if run.link.percent:
            lines += render_link(run, report.detectors)
    lines += ["### Targets", "", *(f"- {t}" for t in targets(report)), ""]
    return "\n".join(lines).rstrip() + "\n"


def render_summary(report: Report) -> str:
    """What users feel, one row per detector they would pick: the clean-link detection
    time of each silent fault and the false deaths on each link, side by side."""
    keys = [k for k in SUMMARY_KEYS if any(k in c for c in report.results.values())]
    keys += [
        k for k in SUMMARY_KEYS if k not in keys and any(k in run.cells for run in report.links)
    ]
    if not keys:
        return ""
    silent = [s for s in report.scenarios if s.key in SILENT]
    congestions = report.congestions()
    links = [link for link in LINKS if any(link.key in runs for runs in congestions.values())]
    several = len(congestions) > 1
    headers = [
        "detector",
        *(f"{s.label}, median s" for s in silent),
        *(
            f"{link.label}: false deaths{' (' + ' / '.join(congestions) + ')' if several else ''}"
            for link in links
        ),
        "websockets' median / its (slowest fault)",
    ]
    rows = []
    for key in keys:
        row = [short(key)]
        for s in silent:
            cell = report.cell(s.key, key)
            row.append(_fmt(median_of(cell)) if cell is not None and cell.outcomes else "")
        for link in links:
            found = [runs[link.key].cells.get(key) for runs in congestions.values()]
            row.append(" / ".join(deaths_text(c) if c is not None else "—" for c in found))
        ratio = report.websockets_ratio(key) if key != "ws" else None
        if ratio is None:
            row.append("—" if key != "ws" else "1x")
        else:
            safe = report.no_more_deaths_than_websockets(key)
            qualifier = {True: ", no more false deaths", False: ", **more** false deaths"}
            row.append(f"{ratio[0]:.1f}x ({ratio[1]}){qualifier.get(safe, '')}")
        rows.append(row)
    return markdown_table(headers, rows)


def render_detection(report: Report) -> list[str]:
    lines = [
        "### Detection time",
        "",
        "Seconds from the fault to the application being told, **median / max** over the "
        "runs, then the verdict (`hb`: the detector's own heartbeat or ping timeout; "
        "`kernel`: an error or end of stream from the socket). Blank: not run in that "
        "fault.",
        "",
    ]
    headers = ["detector", *(s.label for s in report.scenarios)]
    rows = []
    for d in report.detectors:
        row = [d.label]
        for s in report.scenarios:
            cell = report.cell(s.key, d.key)
            row.append(summarize(cell, s.cap) if cell is not None else "")
        rows.append(row)
    return [*lines, markdown_table(headers, rows), ""]


def render_link(run: LinkRun, detectors: Sequence[Detector]) -> list[str]:
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
    where = (
        "dropped at random in each sender's own output hook (nftables `numgen random`)"
        if run.link.local
        else "dropped at random each way on arrival (nftables `numgen random`)"
    )
    lines = [
        f"### {run.link.label}: false deaths, congestion control {run.congestion}",
        "",
        f"{run.link.percent} % of the packets {where}, after {run.clean_for:g} s of clean link; "
        f"{any_cell.connections} connections per detector, {any_cell.seconds:.0f} s; "
        f"every death is false. Linear retransmission timeouts: {linear}.{others} The rate "
        "is per connection-hour alive on the link.",
        "",
    ]
    rows = []
    for d in detectors:
        cell = run.cells.get(d.key)
        if cell is None:
            continue
        reasons: dict[str, int] = {}
        for reason, source, _ in cell.deaths:
            tag = _verdict_tag(reason, source)
            reasons[tag] = reasons.get(tag, 0) + 1
        rows.append(
            [
                d.label,
                f"{len(cell.deaths)}/{cell.connections}",
                f"{cell.hours:.2f}",
                _rate(cell),
                ", ".join(f"{k} ({n})" for k, n in reasons.items()) or "—",
                _survivors(d, cell),
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
    return [*lines, markdown_table(headers, rows), ""]


def _survivors(detector: Detector, cell: LinkCell) -> str:
    alive = [r for r in cell.stats if r.get("alive")]
    extra = []
    p99 = [r["rtt_p99"] for r in alive if r.get("rtt_p99") is not None]
    worst = [r["rtt_max"] for r in alive if r.get("rtt_max") is not None]
    if any("pings_sent" in r for r in alive) and p99 and worst:
        timeouts = sorted({round(r["timeout"], 2) for r in alive})
        shown = (
            f"{timeouts[0]}-{timeouts[-1]}" if len(timeouts) > 3 else ", ".join(map(str, timeouts))
        )
        extra.append(
            f"{sum(r['pings_sent'] for r in alive)} pings, RTT p99 {max(p99) * 1000:.0f} ms, "
            f"max {max(worst):.2f} s, timeout in force {shown} s"
        )
    if detector.endpoint.kind != "tcp":  # keepalive probes are not retransmissions
        extra.append(f"{sum(r.get('tcp_retransmits', 0) for r in alive)} TCP retransmissions")
    return "; ".join(extra)


# ------------------------------------------------------------------------- targets


def targets(report: Report) -> list[str]:
    """One line per target: what it asks, **PASS**/**FAIL**/not decided, and the figures."""
    found = [*_lan_target(report), *_auto_targets(report)]
    idle = report.results.get("idle", {})
    for congestion, runs in report.congestions().items():
        where = f"congestion control {congestion}"
        found += _default_targets(runs, where)
        if LADDER_LINK in runs:
            cells = runs[LADDER_LINK].cells
            for preset in ("auto", "default", "lan"):
                if preset in cells and preset in idle:
                    found.append(_speedup(preset, cells, idle, where))
    return found


def _lan_target(report: Report) -> list[str]:
    lan = [(s, c) for s in report.scenarios if (c := report.cell(s.key, "lan")) is not None]
    if not lan:
        return []
    failing = [
        f"{s.label} ({_fmt(median_of(c))} / {_fmt(worst_of(c))} s)"
        for s, c in lan
        if not (median_of(c) < LAN_TARGET_MEDIAN and worst_of(c) < LAN_TARGET_WORST)
    ]
    worst_median = max(lan, key=lambda sc: median_of(sc[1]))
    worst_max = max(lan, key=lambda sc: worst_of(sc[1]))
    verdict = "**PASS**" if not failing else "**FAIL**: " + "; ".join(failing)
    return [
        f"`Policy.lan()` detects every fault in under {LAN_TARGET_MEDIAN:g} s median and "
        f"{LAN_TARGET_WORST:g} s worst: {verdict} (slowest median: {worst_median[0].label}, "
        f"{_fmt(median_of(worst_median[1]))} s; slowest run: {worst_max[0].label}, "
        f"{_fmt(worst_of(worst_max[1]))} s; faults run: {len(lan)}/{len(SCENARIOS)})."
    ]


def _auto_targets(report: Report) -> list[str]:
    found = []
    silent = [
        (s, c, w)
        for s in report.scenarios
        if s.key in SILENT
        and (c := report.cell(s.key, "auto")) is not None
        and (w := report.cell(s.key, "ws")) is not None
    ]
    if silent:
        figures = "; ".join(
            f"{s.label} {_fmt(median_of(c))} s against {_fmt(median_of(w))} s, "
            f"{median_of(w) / median_of(c):.1f}x"
            for s, c, w in silent
        )
        passed = all(
            median_of(c) <= AUTO_TARGET_MEDIAN and median_of(w) >= WEBSOCKETS_SPEEDUP * median_of(c)
            for _, c, w in silent
        )
        complete = len(silent) == len(SILENT)
        verdict = (
            ("**PASS**" if complete else "**partial run, PASS so far**") if passed else "**FAIL**"
        )
        found.append(
            f"`Policy.auto()` on a clean link detects a blackhole, a blackhole while writing "
            f"and a frozen peer in at most {AUTO_TARGET_MEDIAN:g} s median, at least "
            f"{WEBSOCKETS_SPEEDUP:g}x faster than websockets 1/1 on the same runs: {verdict} "
            f"({figures})."
        )
    for congestion, runs in report.congestions().items():
        for key in ("loss10", "local10"):
            cell = runs[key].cells.get("auto") if key in runs else None
            if cell is None:
                continue
            if cell.deaths:
                verdict = "**FAIL**"
            elif cell.hours >= AUTO_SAFE_HOURS:
                verdict = "**PASS**"
            else:
                verdict = f"**not decided** (under {AUTO_SAFE_HOURS:g} connection-hours)"
            found.append(
                f"`Policy.auto()` has no false death on {LINK_BY_KEY[key].label} each way "
                f"(congestion control {congestion}) in at least {AUTO_SAFE_HOURS:g} "
                f"connection-hours: {verdict}, {deaths_text(cell)}."
            )
    return found


def _default_targets(runs: dict[str, LinkRun], where: str) -> list[str]:
    found = []
    wire = runs.get(LADDER_LINK)
    if wire is not None:
        # Policy() never dies of loss alone where linear timeouts apply: on this host's
        # sockets as they are, or under BBR with the opt-in switch to reno.
        subject = "default" if wire.linear_in_effect else "reno"
        if subject in wire.cells:
            mine = wire.cells[subject]
            verdict = "**PASS**" if not mine.deaths else "**FAIL**"
            found.append(
                f"`{short(subject)}` has no false death at {wire.link.percent} % loss where "
                f"linear timeouts apply ({where}): {verdict}, {deaths_text(mine)}"
                + (
                    f" (rate below {_per_hour(3 / mine.hours)} an hour at 95 %)."
                    if not mine.deaths and mine.hours
                    else "."
                )
            )
        if subject != "default" and "default" in wire.cells:
            found.append(
                f"Reported, not a target: `Policy()` with the default socket options, where "
                f"linear timeouts do not apply ({where}, no opt-in): "
                f"{deaths_text(wire.cells['default'])} (see docs/tuning.md)."
            )
    local = runs.get("local10")
    if local is not None and "default" in local.cells:
        mine = local.cells["default"]
        verdict = (
            "**FAIL**"
            if mine.deaths
            else "**PASS**"
            if mine.hours >= DEFAULT_LOCAL_HOURS
            else f"**not decided** (under {DEFAULT_LOCAL_HOURS:g} connection-hour)"
        )
        found.append(
            f"`Policy()` with the kernel backstop has no false death at {local.link.percent} % "
            f"sender-local drops ({where}) in at least {DEFAULT_LOCAL_HOURS:g} "
            f"connection-hour: {verdict}, {deaths_text(mine)}."
        )
    return found


def _speedup(preset: str, cells: dict[str, LinkCell], idle: dict[str, Cell], where: str) -> str:
    mine = cells[preset]
    rungs = [c for c in LADDER if f"ka{c}" in cells and f"ka{c}" in idle]
    matched = next((c for c in rungs if cells[f"ka{c}"].rate_per_hour <= mine.rate_per_hour), None)
    label = short(preset)
    ladder = ", ".join(
        f"1/1/{c}: {len(cells[f'ka{c}'].deaths)} in {cells[f'ka{c}'].hours:.2f} h" for c in rungs
    )
    loss = LINK_BY_KEY[LADDER_LINK].percent
    if matched is None:
        return (
            f"`{label}` vs kernel keepalive at the same false-death rate ({where}): no rung "
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
            f"{_per_hour(3 / rung.hours)} an hour: run with `--link-seconds 900`)"
        )
    return (
        f"`{label}` at least {SPEEDUP_TARGET:g}x faster than kernel keepalive at the same "
        f"false-death rate ({where}): {verdict}, {ratio:.1f}x. It had {len(mine.deaths)} "
        f"false deaths in {mine.hours:.2f} connection-hours of {loss} % loss; the "
        f"lowest keepalive rung with no higher rate was 1/1/{matched} ({ladder}), whose "
        f"idle-blackhole median is {_fmt(ka_time)} s against {_fmt(my_time)} s."
    )


# ------------------------------------------------------------------------- outputs

CLAIM = (
    "between two network namespaces, `Policy.auto()` finds a blackholed, hung or "
    f"blackholed-while-writing peer on a clean link in at most {AUTO_TARGET_MEDIAN:g} s "
    f"(median), at least {WEBSOCKETS_SPEEDUP:g}x faster than websockets tuned to ping 1 s / "
    "timeout 1 s, and convicts no live peer at 10 % loss each way, on the wire or dropped by "
    f"the sender's own firewall; `Policy.lan()` detects every fault in under "
    f"{LAN_TARGET_MEDIAN:g} s; `Policy()` is at least {SPEEDUP_TARGET:g}x faster than kernel "
    "keepalive tuned to the same false-death rate, and its kernel backstop convicts no live "
    "peer."
)


def render_claim(report: Report, started: datetime.datetime, revision: str) -> str:
    """The ``## detection`` section of RESULTS.md: the claim, the summary, the targets."""
    found = targets(report)
    passed = sum("**PASS**" in t for t in found)
    decided = sum("**PASS**" in t or "**FAIL**" in t for t in found)
    failing = [t for t in found if "**FAIL**" in t]
    undecided = [t for t in found if "not decided" in t]
    findings = [
        "Each row: the median seconds from the fault to the application being told, on a "
        "clean link; false deaths in connection-hours of each link (every death is false); "
        "websockets' median over its own on the slowest of the three faults, and whether "
        "its false deaths were no more than websockets' on every link.",
        f"Targets: {passed} of {decided} decided pass"
        + (f"; failing: {' '.join(failing)}" if failing else "")
        + (f"; not decided: {len(undecided)}" if undecided else "")
        + ". Every target, with its figures, and every table of the run: docs/detection.md.",
    ]
    return claim_section(
        CLAIM,
        render_summary(report),
        findings,
        measured=measured_on(started, revision, ("websockets",)),
        command=report.command,
        how=f"{report.runs} runs per fault; links: {_link_plan(report)}",
    )


def _link_plan(report: Report) -> str:
    if not report.links:
        return "none"
    cell = next(iter(report.links[0].cells.values()))
    names = ", ".join(dict.fromkeys(run.link.label for run in report.links))
    return (
        f"{names}; {cell.connections} connections per detector for {cell.seconds:.0f} s each, "
        f"congestion control {' and '.join(report.congestions())}"
    )


def write_docs(path: Path, text: str) -> None:
    page = path.read_text()
    if DOCS_BEGIN not in page or DOCS_END not in page:
        raise SystemExit(f"{path} lacks the markers {DOCS_BEGIN!r} ... {DOCS_END!r}")
    before, rest = page.split(DOCS_BEGIN, 1)
    _, after = rest.split(DOCS_END, 1)
    # The page's own headings are ##; the results' ### headings stay below them.
    path.write_text(f"{before}{DOCS_BEGIN}\n\n{text}\n{DOCS_END}{after}")


# ------------------------------------------------------------------------- raw measurements


def dump(report: Report) -> dict[str, Any]:
    """The raw measurements, as ``--json`` writes them and ``--report-from`` reads them."""
    return {
        "runs": report.runs,
        "scenarios": {
            s: {k: [vars(o) for o in c.outcomes] for k, c in cells.items()}
            for s, cells in report.results.items()
        },
        "void": {
            s: {k: c.void for k, c in cells.items() if c.void}
            for s, cells in report.results.items()
        },
        "links": [
            {
                "link": run.link.key,
                "congestion": run.congestion,
                "clean_for": run.clean_for,
                "cells": {
                    k: {
                        "connections": v.connections,
                        "seconds": v.seconds,
                        "deaths": v.deaths,
                        "exposure": v.exposure,
                        "stats": v.stats,
                    }
                    for k, v in run.cells.items()
                },
            }
            for run in report.links
        ],
    }


def load(path: Path) -> Report:
    """The measurements that ``--json`` saved in ``path``. Faults and detectors are those
    the file has results for; the command is the one that renders them again."""
    raw = json.loads(path.read_text())
    void = raw.get("void", {})
    results = {
        s: {
            k: Cell([Outcome(**o) for o in outcomes], void.get(s, {}).get(k, 0))
            for k, outcomes in cells.items()
        }
        for s, cells in raw["scenarios"].items()
    }
    links = [
        LinkRun(
            LINK_BY_KEY[entry["link"]],
            entry["congestion"],
            {
                k: LinkCell(
                    c["connections"],
                    c["seconds"],
                    deaths=[(reason, source, at) for reason, source, at in c["deaths"]],
                    exposure=c["exposure"],
                    stats=c["stats"],
                )
                for k, c in entry["cells"].items()
            },
            entry.get("clean_for", LOSSY_AFTER),
        )
        for entry in raw["links"]
    ]
    keys = {k for cells in [*results.values(), *(run.cells for run in links)] for k in cells}
    runs = raw.get("runs") or max(
        (len(c.outcomes) for cells in results.values() for c in cells.values()), default=0
    )
    return Report(
        results,
        links,
        scenarios=[s for s in SCENARIOS if s.key in results],
        detectors=[d for d in DETECTORS if d.key in keys],
        runs=runs,
        command=f".venv/bin/python benchmarks/detection.py --report-from {path}",
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
    parser.add_argument("--runs", type=int, default=5, help="runs per fault (default 5)")
    parser.add_argument(
        "--link-seconds", type=float, default=900.0, help="each link's duration (default 900)"
    )
    parser.add_argument(
        "--link-connections",
        type=int,
        default=20,
        help="connections per detector on each link (default 20)",
    )
    parser.add_argument(
        "--congestion",
        type=_keys,
        default=[HOST_CONGESTION],
        help="congestion controls for the links, comma-separated ('host': the host's "
        "default; others become the namespaces' default, e.g. reno)",
    )
    parser.add_argument(
        "--scenarios",
        type=_keys,
        default=None,
        metavar="KEYS",
        help="only these faults and links, comma-separated: "
        f"{', '.join([*(s.key for s in SCENARIOS), *LINK_BY_KEY])} (default: all); a "
        "partial selection writes nothing",
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


def _command(args: argparse.Namespace, scenario_keys: Sequence[str] | None) -> str:
    command = "sudo .venv/bin/python benchmarks/detection.py" + (" --smoke" if args.smoke else "")
    if not args.smoke and args.runs != 5:
        command += f" --runs {args.runs}"
    if args.congestion != [HOST_CONGESTION]:
        command += f" --congestion {','.join(args.congestion)}"
    if scenario_keys is not None:
        command += f" --scenarios {','.join(scenario_keys)}"
    if args.detectors is not None:
        command += f" --detectors {','.join(args.detectors)}"
    if not args.smoke and args.link_connections != 20:
        command += f" --link-connections {args.link_connections}"
    if not args.smoke and args.link_seconds != 900:
        command += f" --link-seconds {args.link_seconds:g}"
    return command


def _progress(started: float, text: str) -> None:
    print(f"[{time.monotonic() - started:5.0f} s] {text}", flush=True)


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    if args.report_from is not None:
        text = render(load(args.report_from))
        print(text)
        return text
    reason = netns_available()
    if reason is not None:
        raise SystemExit(f"detection needs network namespaces: {reason}")
    scenario_keys = _choose(
        "scenarios", args.scenarios, [*(s.key for s in SCENARIOS), *LINK_BY_KEY]
    )
    detector_keys = _choose("detectors", args.detectors, list(BY_KEY))
    partial = scenario_keys is not None or detector_keys is not None
    settle = FAULT_SETTLE
    if args.smoke:
        args.runs, args.link_seconds, args.link_connections = 1, 4.0, 2
        settle = SMOKE_SETTLE
        scenarios = [s for s in SCENARIOS if s.key in SMOKE_SCENARIOS]
        links = [LINK_BY_KEY[k] for k in SMOKE_LINKS]
        detectors = [BY_KEY[k] for k in SMOKE_KEYS]
    else:
        scenarios, links, detectors = list(SCENARIOS), list(LINKS), list(DETECTORS)
    if scenario_keys is not None:
        scenarios = [s for s in SCENARIOS if s.key in scenario_keys]
        links = [link for link in LINKS if link.key in scenario_keys]
    if detector_keys is not None:
        detectors = [d for d in DETECTORS if d.key in detector_keys]
    rng = random.Random(args.seed)
    started_at = datetime.datetime.now(datetime.UTC)
    started = time.monotonic()

    slots = plan_faults(scenarios, detectors, args.runs, rng)
    results = run_faults(slots, settle, started) if slots else {}

    on_links = [d for d in detectors if d.links]
    link_runs = (
        run_links(
            links, on_links, args.link_connections, args.link_seconds, args.congestion, args.smoke
        )
        if links and on_links
        else []
    )
    for link_run in link_runs:
        _progress(
            started,
            f"{link_run.link.key} ({link_run.congestion}): "
            + ", ".join(f"{k} {len(v.deaths)}/{v.connections}" for k, v in link_run.cells.items()),
        )

    report = Report(
        results,
        link_runs,
        scenarios=scenarios,
        detectors=detectors,
        runs=args.runs,
        command=_command(args, scenario_keys),
    )
    text = render(report)
    print()
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps(dump(report), indent=1))
    if not (args.smoke or args.no_write or partial):
        revision = git_revision(ROOT, "src")
        replace_section(
            args.results,
            "detection: detection on namespaces",
            render_claim(report, started_at, revision),
            RESULTS_HEADER,
        )
        write_docs(args.docs, text)
        print(f"wrote {args.results} (## detection) and {args.docs}")
    elif partial and not (args.smoke or args.no_write):
        print("a partial selection (--scenarios, --detectors): nothing written")
    return text


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
