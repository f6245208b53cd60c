"""Margins and small helpers shared by the fault tests."""

from __future__ import annotations

import time
from typing import Any

#: A verdict may come this much later than its bound on a loaded machine (timer and
#: scheduling delays in two processes, and the nft commands that inject the fault).
LATE = 0.5
#: ... and this much earlier only through clock granularity (HZ=250 kernels tick in 4 ms).
EARLY = 0.05
#: Deaths that need no timer (FIN, RST) come within this.
PROMPT = 0.5
#: Time for the connections to settle (RTT measured, keepalive and ping phases spread).
SETTLE = 1.2


def only(deaths: dict[str, list[dict[str, Any]]], name: str) -> dict[str, Any]:
    """The one death reported for endpoint ``name`` (its single connection)."""
    found = deaths.get(name, [])
    assert len(found) == 1, f"{name}: expected one death, got {found}"
    return found[0]


def report(label: str, death: dict[str, Any], since: float) -> str:
    silence = death.get("silence")
    text = (
        f"{label}: DEAD({death['reason']}, {death['source']}) {death['at'] - since:.3f} s "
        "after the fault"
    )
    if silence is not None:
        text += f", {silence:.3f} s after the last evidence"
    return text


def settle(seconds: float = SETTLE) -> None:
    time.sleep(seconds)  # nothing to wait for: the connections just run for a while
