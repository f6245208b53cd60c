"""How ``pulsewire demo`` shows what happens: a live view, plain lines, the final table.

On a terminal a ``rich`` live view redraws each peer's state, RTT and silence eight times
a second. When stdout is not a terminal (a pipe, a file, CI) rich draws nothing until the
end, so the demo prints one plain line per event instead. ``--json`` uses neither (and
does not need rich, which comes with the ``cli`` extra).

Both tables fit the terminal: every cell that holds a number keeps it on one line with its
unit, only the fault's name may wrap, and columns that are nice to have (RTT, silence,
when the peer was last heard from) are left out when the terminal is too narrow for them.
Every number on screen says what it counts, and the notes under the final table are
written from the figures measured in the same run.
"""

from __future__ import annotations

import asyncio
import os
import re
import textwrap
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rich import box
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from pulsewire.cli.demo_runner import (
    ALIVE,
    STILL_OPEN,
    DemoResult,
    FaultResult,
    Peer,
    verdict_words,
)
from pulsewire.cli.options import format_ms
from pulsewire.core.policy import Policy
from pulsewire.core.states import State

__all__ = ["LiveView", "PlainView", "make_console", "print_results"]

_STATE_STYLE = {
    State.HANDSHAKE: "dim",
    State.ALIVE: "green",
    State.SUSPECT: "bold yellow",
    State.CLOSING: "dim",
    State.DEAD: "bold red",
}

#: Width of the console when stdout is not a terminal and ``COLUMNS`` says nothing.
_PLAIN_WIDTH = 120


def make_console() -> Console:
    """A console on stdout; when stdout is not a terminal, ``COLUMNS`` wide (default 120)."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=_PLAIN_WIDTH)
    return console


def _seconds(value: float) -> str:
    return f"{value:g} s"


# A number and its unit ("1.20 s", "0.182 ms"): never split across two lines.
_NUMBER_AND_UNIT = re.compile(r"(\d) (m?s)\b")
_NO_BREAK = "\u00a0"  # textwrap breaks only at ASCII whitespace, not at this


def _keep_units(text: str) -> str:
    """``text`` with the space between each number and its unit made unbreakable."""
    return _NUMBER_AND_UNIT.sub(rf"\1{_NO_BREAK}\2", text)


def _prose(text: str, width: int, indent: int = 0) -> str:
    """``text`` wrapped to ``width`` columns (later lines indented by ``indent``), each
    paragraph on its own, never between a number and its unit."""
    kept = _keep_units(text)
    wrapped = [
        textwrap.fill(
            paragraph,
            width=max(width, 1),
            subsequent_indent=" " * indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        for paragraph in kept.splitlines()
    ]
    return "\n".join(wrapped).replace(_NO_BREAK, " ")


def _clock(at: float, started: float | None) -> str:
    return "" if started is None else f"+{max(0.0, at - started):.3f} s"


# --------------------------------------------------------------------------------------
# Tables that fit
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    header: str
    #: Only names wrap, between words; a number stays on one line with its unit.
    wrap: bool = False
    justify: JustifyMethod = "left"


_Cell = Callable[[int], RenderableType]


def _fitted(
    console: Console,
    columns: Sequence[tuple[_Column, _Cell]],
    count: int,
    *,
    optional: Sequence[_Column] = (),
    title: str | None = None,
) -> Table:
    """The table of ``count`` rows, each column with the function that renders its cell
    for row ``i``, less the ``optional`` columns (given up in that order) that the console
    has no room for. Columns that may wrap get the room left over, and their cells are
    wrapped here (rich would wrap ``2.5 s`` between the number and its unit); no cell
    is ever cut."""
    for dropped in range(len(optional) + 1):
        gone = optional[:dropped]
        shown = [(spec, cell) for spec, cell in columns if spec not in gone]
        specs = [spec for spec, _ in shown]
        rows = [[cell(i) for _, cell in shown] for i in range(count)]
        widths = {
            index: _needs(console, spec, [row[index] for row in rows])
            for index, spec in enumerate(specs)
            if spec.wrap
        }
        narrowest = _table(specs, rows, widths, title)
        spare = console.width - _natural_width(console, narrowest)
        if spare >= 0:
            break
    for index, width in widths.items():
        widest = _needs(console, replace(specs[index], wrap=False), [row[index] for row in rows])
        widths[index] = min(widest, width + max(spare, 0))
        spare -= widths[index] - width
    return _table(specs, rows, widths, title)


def _table(
    specs: Sequence[_Column],
    rows: Sequence[Sequence[RenderableType]],
    widths: dict[int, int],
    title: str | None,
) -> Table:
    """The table, with the text of column ``i`` wrapped to ``widths[i]`` when given."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for index, spec in enumerate(specs):
        header = spec.header if index not in widths else _prose(spec.header, widths[index])
        table.add_column(header, no_wrap=True, justify=spec.justify)
    for row in rows:
        table.add_row(
            *(
                _prose(cell, widths[index]) if index in widths and isinstance(cell, str) else cell
                for index, cell in enumerate(row)
            ),
            end_section=True,
        )
    return table


def _needs(console: Console, column: _Column, cells: Sequence[RenderableType]) -> int:
    """Columns of text that ``cells`` (and the header) need: the widest line, or, when the
    column may wrap, the widest word (a number and its unit count as one word)."""
    widths = []
    for cell in [column.header, *cells]:
        if column.wrap and isinstance(cell, str):
            widths.append(max(len(word) for word in _keep_units(cell).split()))
        else:
            widths.append(_natural_width(console, cell))
    return max(widths)


def _natural_width(console: Console, renderable: RenderableType) -> int:
    """How wide ``renderable`` is drawn when nothing limits it (rich's measure would stop
    at the console's width)."""
    unlimited = console.options.update_width(10_000)
    return Measurement.get(console, unlimited, renderable).maximum


# --------------------------------------------------------------------------------------
# Live
# --------------------------------------------------------------------------------------


def _live_pulsewire(peer: Peer, started: float | None) -> Text:
    text = Text(peer.state.name, style=_STATE_STYLE[peer.state])
    if peer.death is not None and peer.died_at is not None:
        text.append(f" at {_clock(peer.died_at, started)}")
    elif peer.recovered_at is not None and peer.state is State.ALIVE:
        text.append(f" again at {_clock(peer.recovered_at, started)}")
    return text


def _live_kernel(peer: Peer, started: float | None) -> Text:
    if peer.kernel_at is None:
        return Text("open", style="green")
    return Text("DEAD", style=_STATE_STYLE[State.DEAD]).append(
        f" at {_clock(peer.kernel_at, started)}"
    )


class LiveView:
    """The live table: one row per peer, the latest events underneath."""

    def __init__(self, console: Console, headline: str) -> None:
        self.console = console
        self.headline = headline
        self.peers: list[Peer] = []
        self.started: float | None = None
        self.events: deque[str] = deque(maxlen=8)
        self.live = Live(console=console, auto_refresh=False, transient=False)
        self.live.start()

    def connected(self, peers: list[Peer]) -> None:
        self.peers = peers
        self.events.append(f"{len(peers)} peers connected; measuring round trips before the faults")
        self.tick()

    def injected(self, started: float) -> None:
        self.started = started
        self.events.append(f"{'+0.000 s':>9}  faults injected")

    def event(self, peer: Peer, text: str, at: float) -> None:
        self.events.append(f"{_clock(at, self.started):>9}  {peer.fault.label}: {text}")

    def _events(self) -> str:
        width = self.console.width
        return "\n".join(_prose(event, width, indent=11) for event in self.events)

    def tick(self) -> None:
        self.live.update(self._render(), refresh=True)

    def stop(self) -> None:
        self.tick()
        self.live.stop()

    def _render(self) -> RenderableType:
        peers, started = self.peers, self.started
        silent = _Column("silent for", justify="right")
        rtt = _Column("round trip", justify="right")
        table = _fitted(
            self.console,
            [
                (_Column("fault", wrap=True), lambda i: peers[i].fault.label),
                (_Column("pulsewire"), lambda i: _live_pulsewire(peers[i], started)),
                (silent, lambda i: f"{peers[i].silence:.2f} s"),
                (rtt, lambda i: format_ms(peers[i].rtt)),
                (_Column("kernel keepalive"), lambda i: _live_kernel(peers[i], started)),
            ],
            len(peers),
            optional=[rtt, silent],
        )
        if started is None:
            status = "connecting, then measuring round trips before the faults"
        else:
            elapsed = asyncio.get_running_loop().time() - started
            status = f"+{elapsed:.1f} s since the faults were injected"
        return Group(
            Text(_prose(self.headline, self.console.width), style="bold"),
            Text(status),
            table,
            Text(self._events(), style="dim"),
        )


class PlainView:
    """One line per event, for pipes and files."""

    def __init__(self, console: Console, headline: str) -> None:
        self.console = console
        self.started: float | None = None
        self.width = 0
        console.print(_prose(headline, console.width), markup=False)

    def connected(self, peers: list[Peer]) -> None:
        self.width = max(len(peer.fault.label) for peer in peers)
        listed = ", ".join(peer.fault.label for peer in peers)
        self.console.print(f"{len(peers)} peers connected: {listed}")

    def injected(self, started: float) -> None:
        self.started = started
        self.console.print(f"{'+0.000 s':>10}  faults injected")

    def event(self, peer: Peer, text: str, at: float) -> None:
        self.console.print(
            f"{_clock(at, self.started):>10}  {peer.fault.label:<{self.width}}  {text}",
            soft_wrap=True,
        )

    def tick(self) -> None:
        pass

    def stop(self) -> None:
        pass


# --------------------------------------------------------------------------------------
# The final table and what it means
# --------------------------------------------------------------------------------------


def _after(seconds: float | None) -> str:
    return "" if seconds is None else f" after {seconds:.2f} s"


def _pulsewire_cell(row: FaultResult) -> str:
    verdict = row.pulsewire
    if verdict.verdict != ALIVE:
        return f"dead{_after(verdict.after)}\n{verdict_words(verdict.verdict)}"
    if verdict.suspect_after is None:
        return "alive throughout"
    lines = [f"suspect{_after(verdict.suspect_after)}"]
    if verdict.recovered_after is not None:
        lines.append(f"alive again{_after(verdict.recovered_after)}")
    else:
        lines.append("still suspect at the end")
    return "\n".join(lines)


def _kernel_cell(row: FaultResult) -> str:
    if row.kernel.verdict == STILL_OPEN:
        return "still open:\nnever noticed"
    return f"dead{_after(row.kernel.after)}\n{verdict_words(row.kernel.verdict)}"


def _last_heard(row: FaultResult) -> float | None:
    """How long before the fault pulsewire last heard from the peer (None: alive)."""
    verdict = row.pulsewire
    if verdict.verdict == ALIVE or verdict.after is None:
        return None
    return max(0.0, verdict.silence - verdict.after)


def _last_heard_cell(row: FaultResult) -> str:
    before = _last_heard(row)
    if before is None:
        return "-"
    return f"{before:.2f} s before\nthe fault"


def _expected_cell(row: FaultResult) -> str:
    return "yes" if row.ok else "NO, expected\n" + "\nor ".join(row.expected)


def _labels(rows: Sequence[FaultResult]) -> str:
    return ", ".join(row.label for row in rows)


def _timeout_words(policy: Policy) -> str:
    """``this policy's 3 s timeout``, or its adaptive range."""
    if policy.adaptive is None:
        return f"this policy's {_seconds(policy.timeout)} timeout"
    return (
        f"this policy's adaptive timeout (between {_seconds(policy.adaptive.min_timeout)} "
        f"and {_seconds(policy.timeout)})"
    )


def _notes(result: DemoResult, policy: Policy) -> list[str]:
    """What the table means, each sentence written from this run's figures."""
    keepalive = result.kernel_keepalive
    keepalive_time = float(keepalive["idle_detection_time"])
    notes = [
        "Times count from the moment each fault was injected. pulsewire and kernel "
        "keepalive both count silence from the last thing they heard from the peer, "
        "which came before the fault: so a verdict can come sooner after the fault than "
        "the silence it needs."
    ]
    heartbeat = [row for row in result.faults if row.pulsewire.verdict == "timeout"]
    if heartbeat and (before := _last_heard(heartbeat[0])) is not None:
        row = heartbeat[0]
        notes.append(
            f"pulsewire declared the {row.label} peer dead when it had been silent for "
            f"{row.pulsewire.silence:.2f} s ({_timeout_words(policy)}): it had last heard "
            f"from it {before:.2f} s before the fault, so the verdict came "
            f"{row.pulsewire.silence - before:.2f} s after the fault."
        )
    probed = [row for row in result.faults if row.kernel.verdict == "timeout"]
    if probed:
        notes.append(
            f"Kernel keepalive drops a connection {_seconds(keepalive_time)} after the last "
            "packet it received, and on a healthy connection its probes are answered about "
            f"every {_seconds(float(keepalive['idle']))}: it noticed "
            + ", ".join(f"the {row.label} peer{_after(row.kernel.after)}" for row in probed)
            + " the fault."
        )
    missed = [row for row in result.faults if row.kernel.verdict == STILL_OPEN]
    if missed:
        notes.append(
            f"Kernel keepalive never noticed: {_labels(missed)}. The operating system of "
            "those peers kept answering its probes while the program itself answered "
            "nothing; only a heartbeat that the peer's program answers, like pulsewire's, "
            "tells."
        )
    faster = [
        (row, row.kernel.after)
        for row in result.faults
        if row.kernel.after is not None
        and row.kernel.verdict not in ("eof", "reset")
        and (row.pulsewire.after is None or row.kernel.after < row.pulsewire.after)
    ]
    if faster:
        compared = ", ".join(
            f"{row.label} ({kernel_after:.2f} s after the fault; pulsewire: "
            f"{'never' if row.pulsewire.after is None else f'{row.pulsewire.after:.2f} s'})"
            for row, kernel_after in faster
        )
        why = (
            f" Its {_seconds(keepalive_time)} of silence is shorter than this policy's "
            f"{_seconds(policy.timeout)} timeout."
            if policy.adaptive is None and keepalive_time < policy.timeout
            else ""
        )
        notes.append(
            f"Kernel keepalive was faster on: {compared}.{why} pulsewire's timeout is yours "
            "to choose: --policy lan declares a peer dead after 0.8 s of silence."
        )
    for row in result.faults:
        verdict = row.pulsewire
        if row.ok and verdict.verdict == ALIVE and verdict.recovered_after is not None:
            notes.append(
                f"The {row.label} peer was suspect{_after(verdict.suspect_after)} and alive "
                f"again{_after(verdict.recovered_after)}: a pause shorter than "
                f"{_timeout_words(policy)} is forgiven, not declared dead."
            )
    if result.ok:
        notes.append("pulsewire gave every fault its expected verdict.")
    else:
        wrong = _labels([row for row in result.faults if not row.ok])
        notes.append(f"pulsewire did NOT give the expected verdict for: {wrong}.")
    return notes


def print_results(console: Console, result: DemoResult, policy: Policy) -> None:
    """The final table: per fault, each side's verdict and how long after the fault it
    came; then what it means, in sentences written from the same figures."""
    rows = result.faults
    last_heard = _Column("pulsewire last heard\nfrom the peer")
    table = _fitted(
        console,
        [
            (_Column("fault", wrap=True), lambda i: rows[i].label),
            (_Column("pulsewire"), lambda i: _pulsewire_cell(rows[i])),
            (_Column("kernel keepalive"), lambda i: _kernel_cell(rows[i])),
            (last_heard, lambda i: _last_heard_cell(rows[i])),
            (_Column("as expected"), lambda i: _expected_cell(rows[i])),
        ],
        len(rows),
        optional=[last_heard],
        title="What noticed each fault, and how long after it",
    )
    console.print()
    console.print(table)
    for note in _notes(result, policy):
        console.print(_prose(note, console.width), markup=False, soft_wrap=True)
