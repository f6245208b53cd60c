"""Margins and small helpers shared by the fault tests."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pulsewire.cli.netns import TwoHosts

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


def set_congestion(hosts: TwoHosts, algorithm: str) -> None:
    """Make ``algorithm`` the default congestion control of both hosts' namespaces.

    Linear retransmission timeouts (on by default) only work under a congestion control
    that sets a slow-start threshold, such as reno or cubic; BBR never does. Skips the
    test when a namespace may not use ``algorithm`` (``tcp_allowed_congestion_control``).
    """
    with open("/proc/sys/net/ipv4/tcp_allowed_congestion_control") as file:
        allowed = file.read().split()
    if algorithm not in allowed:
        pytest.skip(f"{algorithm} is not allowed in a network namespace here ({allowed})")
    for host in (hosts.a, hosts.b):
        hosts.run(host, "sysctl", "-q", "-w", f"net.ipv4.tcp_congestion_control={algorithm}")
