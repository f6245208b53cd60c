"""How ``pulsewire demo`` shows what happens: a live view, plain lines, the final table.

On a terminal a ``rich`` live view redraws each peer's state, RTT and silence eight times
a second. When stdout is not a terminal (a pipe, a file, CI) rich draws nothing until the
end, so the demo prints one plain line per event instead. ``--json`` uses neither.
"""

from __future__ import annotations

import asyncio
from collections import deque

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pulsewire.cli.demo_runner import ALIVE, STILL_OPEN, DemoResult, FaultResult, Peer
from pulsewire.cli.options import format_ms
from pulsewire.core.states import State

__all__ = ["LiveView", "PlainView", "make_console", "print_results"]

_STATE_STYLE = {
    State.HANDSHAKE: "dim",
    State.ALIVE: "green",
    State.SUSPECT: "bold yellow",
    State.CLOSING: "dim",
    State.DEAD: "bold red",
}


def make_console() -> Console:
    """A console on stdout; a fixed, wide one when stdout is not a terminal."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=120)
    return console


def _clock(at: float, started: float | None) -> str:
    return "" if started is None else f"{at - started:+.3f} s"


def _pulsewire_verdict(peer: Peer, started: float | None) -> str:
    death = peer.death
    if death is not None and peer.died_at is not None:
        return f"{death.reason.value} ({death.source.value}) {_clock(peer.died_at, started)}"
    if peer.recovered_at is not None:
        return f"alive again {_clock(peer.recovered_at, started)}"
    return "-"


def _kernel_verdict(peer: Peer, started: float | None) -> str:
    if peer.kernel_at is None:
        return "open"
    return f"{peer.kernel_verdict} {_clock(peer.kernel_at, started)}"


class LiveView:
    """The live table: one row per peer, the latest events underneath."""

    def __init__(self, console: Console, headline: str) -> None:
        self.console = console
        self.headline = headline
        self.peers: list[Peer] = []
        self.started: float | None = None
        self.now: float | None = None
        self.events: deque[str] = deque(maxlen=8)
        self.live = Live(console=console, auto_refresh=False, transient=False)
        self.live.start()

    def connected(self, peers: list[Peer]) -> None:
        self.peers = peers
        self.events.append(f"{len(peers)} peers connected; baseline before the faults")
        self.tick()

    def injected(self, started: float) -> None:
        self.started = started
        self.events.append(f"{'+0.000 s':>9}  faults injected")

    def event(self, peer: Peer, text: str, at: float) -> None:
        self.events.append(f"{_clock(at, self.started):>9}  {peer.name}  {text}")

    def tick(self) -> None:
        self.live.update(self._render(), refresh=True)

    def stop(self) -> None:
        self.tick()
        self.live.stop()

    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def _render(self) -> RenderableType:
        table = Table(expand=False)
        for column in ("peer", "fault", "pulsewire", "RTT", "silence", "verdict"):
            table.add_column(column, no_wrap=True)
        table.add_column("kernel keepalive 1s/1s/1", no_wrap=True)
        for peer in self.peers:
            table.add_row(
                peer.name,
                peer.fault.label,
                Text(peer.state.name, style=_STATE_STYLE[peer.state]),
                format_ms(peer.rtt),
                f"{peer.silence:.2f} s",
                _pulsewire_verdict(peer, self.started),
                _kernel_verdict(peer, self.started),
            )
        if self.started is None:
            status = "connecting and measuring RTTs before the faults"
        else:
            status = f"t = {self._loop_time() - self.started:+.1f} s since the faults were injected"
        return Group(
            Text(self.headline, style="bold"),
            Text(status),
            table,
            Text("\n".join(self.events), style="dim"),
        )


class PlainView:
    """One line per event, for pipes and files."""

    def __init__(self, console: Console, headline: str) -> None:
        self.console = console
        self.started: float | None = None
        console.print(headline, soft_wrap=True)

    def connected(self, peers: list[Peer]) -> None:
        listed = ", ".join(f"{peer.name} {peer.fault.label}" for peer in peers)
        self.console.print(f"{len(peers)} peers connected: {listed}", soft_wrap=True)

    def injected(self, started: float) -> None:
        self.started = started
        self.console.print(f"{'+0.000 s':>10}  faults injected")

    def event(self, peer: Peer, text: str, at: float) -> None:
        self.console.print(
            f"{_clock(at, self.started):>10}  {peer.name}  {peer.fault.label:<22}  {text}",
            soft_wrap=True,
        )

    def tick(self) -> None:
        pass

    def stop(self) -> None:
        pass


def _pulsewire_cell(result: FaultResult) -> str:
    verdict = result.pulsewire
    if verdict.verdict == ALIVE:
        steps = []
        if verdict.suspect_after is not None:
            steps.append(f"suspect {verdict.suspect_after:.2f} s")
        if verdict.recovered_after is not None:
            steps.append(f"alive {verdict.recovered_after:.2f} s")
        return "alive" + (f" ({', '.join(steps)})" if steps else "")
    return f"{verdict.verdict} ({verdict.source}), silent {verdict.silence:.2f} s"


def _after(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def print_results(console: Console, result: DemoResult) -> None:
    """The final table, and what it means."""
    table = Table(title="pulsewire vs kernel keepalive (1 s idle, 1 s interval, 1 probe)")
    table.add_column("fault", no_wrap=True)
    table.add_column("pulsewire verdict", no_wrap=True)
    table.add_column("after", justify="right")
    table.add_column("kernel keepalive")
    table.add_column("after", justify="right")
    table.add_column("as expected", no_wrap=True)
    for row in result.faults:
        table.add_row(
            row.label,
            _pulsewire_cell(row),
            _after(row.pulsewire.after),
            row.kernel.verdict,
            _after(row.kernel.after),
            "yes" if row.ok else f"NO: {' or '.join(row.expected)}",
        )
    console.print(table)
    missed = [row.label for row in result.faults if row.kernel.verdict == STILL_OPEN]
    if missed:
        console.print(
            f"Kernel keepalive, tuned to its tightest, still holds the sockets of: "
            f"{', '.join(missed)}. Their kernels answer its probes while the processes "
            "answer nothing: only a heartbeat answered by the peer's own event loop tells."
        )
    faster = [
        row.label
        for row in result.faults
        if row.kernel.after is not None
        and row.kernel.verdict not in ("eof", "reset")
        and (row.pulsewire.after is None or row.kernel.after < row.pulsewire.after)
    ]
    if faster:
        console.print(
            f"Kernel keepalive was faster on: {', '.join(faster)}. pulsewire's timeout is "
            "yours to choose (--policy lan convicts after 0.8 s); keepalive cannot go below "
            "2 s, nor see a frozen process."
        )
    if result.ok:
        console.print("pulsewire gave every fault its expected verdict.")
    else:
        wrong = ", ".join(row.label for row in result.faults if not row.ok)
        console.print(f"pulsewire did NOT give the expected verdict for: {wrong}.")
