"""``pulsewire demo``'s screens, drawn from recorded results at the widths people use.

The final table must keep each fault's pulsewire and kernel keepalive verdicts side by
side on one line, with their units, at 80 columns and wider; the live view must not cut a
cell; every number on screen must be one that the run measured or configured.
"""

from __future__ import annotations

import io
import re

import msgspec
import pytest
from rich.console import Console

from pulsewire.cli.demo import headline
from pulsewire.cli.demo_runner import (
    QUICK_POLICY,
    STILL_OPEN,
    DemoResult,
    Fault,
    FaultResult,
    Peer,
)
from pulsewire.cli.demo_view import LiveView, print_results
from pulsewire.cli.peer import TIGHTEST_KEEPALIVE
from pulsewire.core.events import Death, Source
from pulsewire.core.policy import Policy
from pulsewire.core.states import Reason, State

WIDTHS = (80, 100, 120)


def _row(
    key: str,
    label: str,
    expected: list[str],
    verdict: str,
    *,
    after: float | None = None,
    silence: float,
    suspect: float | None = None,
    recovered: float | None = None,
    kernel: str = STILL_OPEN,
    kernel_after: float | None = None,
) -> dict[str, object]:
    return {
        "fault": key,
        "label": label,
        "peer": f"peer-{key}",
        "expected": expected,
        "ok": verdict in expected,
        "pulsewire": {
            "verdict": verdict,
            "source": None if verdict == "alive" else "heartbeat",
            "after": after,
            "suspect_after": suspect,
            "recovered_after": recovered,
            "silence": silence,
            "last_rtt": 0.000412,
        },
        "kernel": {"verdict": kernel, "after": kernel_after},
    }


#: A run with the default policy and --netns, as measured (the kernel's blackhole verdict
#: 1.40 s after the fault: its 2 s count from the last packet before it).
NETNS_RUN = msgspec.convert(
    {
        "policy": "default",
        "policy_description": Policy().describe(),
        "stall": 2.5,
        "kernel_keepalive": {"idle": 1, "interval": 1, "count": 1, "idle_detection_time": 2},
        "duration": 5.2,
        "faults": [
            _row("frozen", "frozen (SIGSTOP)", ["timeout"], "timeout", after=2.53, silence=3.01),
            _row(
                "killed",
                "killed (SIGKILL)",
                ["eof", "reset"],
                "eof",
                after=0.01,
                silence=0.39,
                kernel="eof",
                kernel_after=0.0,
            ),
            _row(
                "reset",
                "reset (RST)",
                ["reset"],
                "reset",
                after=0.02,
                silence=0.81,
                kernel="reset",
                kernel_after=0.01,
            ),
            _row(
                "stalled",
                "loop blocked 2.5 s",
                ["alive"],
                "alive",
                silence=0.2,
                suspect=2.01,
                recovered=2.5,
            ),
            _row(
                "blackholed",
                "blackholed (cable cut)",
                ["timeout"],
                "timeout",
                after=2.73,
                silence=3.0,
                kernel="timeout",
                kernel_after=1.4,
            ),
            _row(
                "rebooted",
                "crashed and rebooted",
                ["reset"],
                "reset",
                after=0.07,
                silence=0.8,
                kernel="reset",
                kernel_after=0.42,
            ),
        ],
    },
    DemoResult,
)


def _render(result: DemoResult, policy: Policy, width: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO(), highlight=False)
    print_results(console, result, policy)
    return console.export_text().splitlines()


def _cell_text(after: float | None, verdict: str) -> str:
    """What a cell must say on the row's first line: the time with its unit, or never."""
    if verdict == STILL_OPEN:
        return "still open"
    if verdict == "alive":
        return "suspect after"
    return f"dead after {after:.2f} s"


@pytest.mark.parametrize("width", WIDTHS)
def test_each_fault_shows_both_verdicts_side_by_side_with_units(width: int) -> None:
    lines = _render(NETNS_RUN, Policy(), width)
    assert all(len(line) <= width for line in lines)
    assert not any("…" in line for line in lines)  # nothing cut
    for row in NETNS_RUN.faults:
        pulsewire = _cell_text(row.pulsewire.after, row.pulsewire.verdict)
        kernel = _cell_text(row.kernel.after, row.kernel.verdict)
        first_word = row.label.split()[0]
        same_line = [
            line
            for line in lines
            if line.lstrip().startswith(first_word) and pulsewire in line and kernel in line
        ]
        assert len(same_line) == 1, (row.label, pulsewire, kernel, "\n".join(lines))
        # pulsewire's cell comes first, kernel keepalive's right after it.
        assert same_line[0].index(pulsewire) < same_line[0].index(kernel)


def test_a_wide_terminal_also_shows_when_the_peer_was_last_heard_from() -> None:
    wide = "\n".join(_render(NETNS_RUN, Policy(), 120))
    narrow = "\n".join(_render(NETNS_RUN, Policy(), 80))
    assert "last heard" in wide
    # frozen: silent 3.01 s when declared dead 2.53 s after the fault.
    assert "0.48 s before" in wide
    assert "last heard" not in narrow.split("Times count")[0]


def test_numbers_on_screen_are_the_runs_own() -> None:
    """Every number with a unit in the table and its notes was measured or configured."""
    policy = Policy()
    text = "\n".join(_render(NETNS_RUN, policy, 100))
    known = {f"{value:g}" for value in (policy.timeout, 0.8, 2.5, 1, 2)}
    for row in NETNS_RUN.faults:
        figures = [
            row.pulsewire.after,
            row.pulsewire.silence,
            row.pulsewire.suspect_after,
            row.pulsewire.recovered_after,
            row.kernel.after,
        ]
        if row.pulsewire.after is not None:
            figures.append(row.pulsewire.silence - row.pulsewire.after)
        known |= {f"{value:.2f}" for value in figures if value is not None}
    shown = set(re.findall(r"(\d+(?:\.\d+)?) s\b", text))
    assert shown - known == set()
    # The kernel's 1.40 s is explained, not contradicted by a floor it seems to break.
    assert "cannot go below" not in text
    assert "blackholed (cable cut) (1.40 s after the fault; pulsewire: 2.73 s)" in " ".join(
        text.split()
    )
    assert "Kernel keepalive drops a connection 2 s after the last packet it received" in (
        " ".join(text.split())
    )


def test_the_notes_say_what_happened_to_the_frozen_and_stalled_peers() -> None:
    text = " ".join(" ".join(_render(NETNS_RUN, Policy(), 80)).split())
    assert (
        "pulsewire declared the frozen (SIGSTOP) peer dead when it had been silent for "
        "3.01 s (this policy's 3 s timeout): it had last heard from it 0.48 s before the "
        "fault, so the verdict came 2.53 s after the fault."
    ) in text
    assert "Kernel keepalive never noticed: frozen (SIGSTOP), loop blocked 2.5 s." in text
    assert "suspect after 2.01 s and alive again after 2.50 s" in text
    assert text.endswith("pulsewire gave every fault its expected verdict.")


def test_a_wrong_verdict_is_called_out() -> None:
    frozen = NETNS_RUN.faults[0]
    wrong = msgspec.structs.replace(
        frozen,
        ok=False,
        pulsewire=msgspec.structs.replace(frozen.pulsewire, verdict="eof", source="kernel"),
    )
    result = msgspec.structs.replace(NETNS_RUN, faults=[wrong, *NETNS_RUN.faults[1:]])
    lines = _render(result, Policy(), 80)
    assert any(line.lstrip().startswith("frozen") and "NO, expected" in line for line in lines)
    text = " ".join(" ".join(lines).split())
    assert "pulsewire did NOT give the expected verdict for: frozen (SIGSTOP)." in text


def test_the_headline_explains_the_policy_and_kernel_keepalive_in_words() -> None:
    text = headline("quick", QUICK_POLICY, TIGHTEST_KEEPALIVE)
    assert "pulsewire pings a quiet peer about every 0.3 s" in text
    assert "suspect after 0.9 s of silence and dead after 1.5 s of silence" in text
    assert "a probe after 1 s of silence" in text
    assert "(2 s of silence in all)" in text
    adaptive = headline("wan", Policy.wan(), TIGHTEST_KEEPALIVE)
    assert "dead after 3 s to 10 s of silence (adaptive" in adaptive
    for jargon in ("responder", "initiator", "evidence", "TCP_", "reno", "bbr"):
        assert jargon not in text


def _peer(label: str, state: State) -> Peer:
    async def nothing(peer: Peer) -> None:
        pass

    return Peer(name="peer-x", fault=Fault(label, label, nothing, ("timeout",)), state=state)


@pytest.mark.asyncio
@pytest.mark.parametrize("width", [80, 120])
async def test_the_live_view_fits_without_cutting_a_cell(width: int) -> None:
    console = Console(width=width, record=True, file=io.StringIO(), highlight=False)
    view = LiveView(console, headline("default", Policy(), TIGHTEST_KEEPALIVE))
    peers = [_peer(fault.label, State.ALIVE) for fault in NETNS_RUN.faults]
    view.connected(peers)
    view.injected(started=0.0)
    dead = peers[0]
    dead.state, dead.died_at, dead.kernel_at, dead.rtt, dead.silence = (
        State.DEAD,
        2.53,
        None,
        0.000412,
        3.01,
    )
    dead.death = Death(reason=Reason.TIMEOUT, source=Source.HEARTBEAT, silence=3.01, last_rtt=None)
    recovered = peers[3]
    recovered.recovered_at = 2.5
    view.event(dead, "pulsewire: DEAD (timeout: no answer), silent for 3.01 s", 2.53)
    view.stop()
    lines = console.export_text().splitlines()
    assert all(len(line) <= width for line in lines)
    assert not any("…" in line for line in lines)
    assert any("frozen (SIGSTOP)" in line and "DEAD at +2.530 s" in line for line in lines)
    assert any("ALIVE again at +2.500 s" in line for line in lines)
    # the event line wraps between words, never between a number and its unit
    assert not any(line.rstrip().endswith(("3.01", "2.53")) for line in lines)
    if width >= 120:
        assert any("round trip" in line for line in lines)
        assert any("0.412 ms" in line for line in lines)


def test_results_parse_as_the_json_the_demo_prints() -> None:
    """The fixture above is what ``--json`` prints: the view reads only that."""
    data = NETNS_RUN.to_builtins()
    assert set(data) == {
        "policy",
        "policy_description",
        "stall",
        "kernel_keepalive",
        "duration",
        "faults",
        "ok",
    }
    assert isinstance(NETNS_RUN.faults[0], FaultResult)
