"""Overload is not a local stall: ping flooders are shed, healthy peers notice nothing.

The attackers and the healthy clients are separate processes (``attackers.py``); the
server runs here, in the test's event loop, with the default policy (a 2 s handshake
deadline keeps the test short).
"""

from __future__ import annotations

import asyncio
import time

import pytest
import structlog

import pulsewire
from pulsewire import CloseCode, logevents
from pulsewire.asyncio.scheduler import scheduler_for


class Watcher(pulsewire.Server):
    """Records what happens to the healthy clients' connections on the server's side."""

    def __init__(self) -> None:
        self.suspected: list[str] = []
        self.died: list[tuple[str, pulsewire.Death]] = []

    async def on_suspect(self, connection: pulsewire.Connection) -> None:
        self.suspected.append(connection.peer_name)

    async def on_dead(self, connection: pulsewire.Connection, death: pulsewire.Death) -> None:
        self.died.append((connection.peer_name, death))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


FLOODERS = 300
RAMP = 3.0  # the flooders start evenly over this many seconds
SILENT = 20
HANDSHAKE_TIMEOUT = 2.0
HEALTHY_INTERVAL = 0.1  # timeout 1 s: SUSPECT after 0.55 s of silence


@pytest.mark.slow
@pytest.mark.asyncio
async def test_300_ping_flooders_are_shed_and_healthy_clients_notice_nothing(start_script):
    watcher = Watcher()
    policy = pulsewire.Policy(handshake_timeout=HANDSHAKE_TIMEOUT)
    scheduler = scheduler_for(asyncio.get_running_loop())
    async with await pulsewire.serve(watcher, policy=policy) as listener:
        port = str(listener.port)
        healthy = await start_script(
            "attackers.py", "healthy", "--port", port, "--count", "2",
            "--interval", str(HEALTHY_INTERVAL), "--for", str(RAMP + 8.0),
        )  # fmt: skip
        await healthy.read_until("connected", 2, within=20)
        stalled_before = scheduler.stalled
        flood = await start_script(
            "attackers.py", "flood", "--port", port, "--count", str(FLOODERS),
            "--over", str(RAMP), "--silent", str(SILENT),
        )  # fmt: skip
        await flood.read_until("done", within=RAMP + 30)
        await healthy.read_until("done", within=RAMP + 30)
        stats = listener.stats()
    flooders = flood.where("flooder")
    silent = flood.where("silent")
    rtts = [line["rtt"] for line in healthy.where("rtt")]
    changes = healthy.where("state")
    shed_after = [line["closed"] - line["started"] for line in flooders]
    lifetimes = [line["closed"] - line["opened"] for line in silent]
    print(
        f"\n{FLOODERS} flooders (started over {RAMP} s): closed 1005 after "
        f"{percentile(shed_after, 0.5) * 1000:.1f} ms median, {max(shed_after) * 1000:.1f} ms "
        f"at worst; {SILENT} silent connections dropped after {min(lifetimes):.3f}-"
        f"{max(lifetimes):.3f} s (deadline {HANDSHAKE_TIMEOUT} s); healthy RTT over "
        f"{len(rtts)} pings: p50 {percentile(rtts, 0.5) * 1000:.2f} ms, p99 "
        f"{percentile(rtts, 0.99) * 1000:.2f} ms, max {max(rtts) * 1000:.2f} ms; scheduler: "
        f"{scheduler.stalled - stalled_before:.3f} s compensated, {scheduler.overloaded} "
        f"late fires (worst {scheduler.max_overload * 1000:.0f} ms)"
    )
    # Every flooder was told TOO_MANY_PINGS, within 2 s of its first PING.
    assert len(flooders) == FLOODERS
    assert {line["code"] for line in flooders} == {CloseCode.TOO_MANY_PINGS}
    assert max(shed_after) <= 2.0
    assert stats.deaths.get("protocol_error") == FLOODERS
    # The silent connections were dropped at the handshake deadline, in real time.
    assert {line["code"] for line in silent} == {CloseCode.HANDSHAKE_TIMEOUT}
    assert all(abs(lifetime - HANDSHAKE_TIMEOUT) <= 0.5 for lifetime in lifetimes)
    assert stats.handshake_failures == {"timeout": SILENT}
    # The healthy clients saw nothing but their own orderly close, on either side.
    assert [line["state"] for line in changes] == ["dead", "dead"]
    assert all(line["reason"] == "local_close" for line in changes)
    assert watcher.suspected == []
    healthy_deaths = [death for name, death in watcher.died if name.startswith("healthy")]
    assert len(healthy_deaths) == 2
    assert all(death.clean for death in healthy_deaths)
    assert len(rtts) >= 100
    assert percentile(rtts, 0.99) < 0.100


async def silent_lifetime(port: int, within: float) -> float:
    """Open a connection that says nothing; return how long until the server drops it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened = time.monotonic()
    try:
        async with asyncio.timeout(within):
            await reader.read()  # the server's preamble and CLOSE, then FIN
        return time.monotonic() - opened
    finally:
        writer.close()


@pytest.mark.asyncio
async def test_a_loop_busy_with_short_callbacks_keeps_deadlines_in_real_time() -> None:
    # Each turn of the loop runs 80 callbacks of 5 ms, each asking pulsewire something
    # (as reads and sends do): the loop never stops, but a timer waits for the rest of
    # its turn and then behind the next turn's callbacks, up to 0.8 s. That is overload,
    # not a stall: nothing may be compensated, and the 1 s handshake deadline passes in
    # real time, give or take those turns (a compensated clock would have run at a
    # quarter of real time, the deadline passing after some 4 s).
    handshake_timeout = 1.0
    policy = pulsewire.Policy(handshake_timeout=handshake_timeout)
    loop = asyncio.get_running_loop()
    scheduler = scheduler_for(loop)
    stalled_before, overloaded_before = scheduler.stalled, scheduler.overloaded

    async def hold(connection: pulsewire.Connection) -> None:
        await connection.wait_dead()

    async with await pulsewire.serve(hold, policy=policy) as listener:
        client = await pulsewire.connect("127.0.0.1", listener.port)
        stop = time.monotonic() + handshake_timeout + 3.0

        def burn() -> None:
            client.stats()
            end = time.perf_counter() + 0.005
            while time.perf_counter() < end:
                pass

        def turn() -> None:
            if time.monotonic() < stop:
                for _ in range(80):
                    loop.call_soon(burn)
                loop.call_soon(turn)

        turn()
        with structlog.testing.capture_logs() as logs:
            lifetime = await silent_lifetime(listener.port, within=10.0)
        await client.close()
    # The server's own account: how long after it took the connection it gave up on it.
    (failed,) = [e for e in logs if e["event"] == logevents.HANDSHAKE_FAILED]
    compensated = scheduler.stalled - stalled_before
    late = scheduler.overloaded - overloaded_before
    print(
        f"\nbusy loop: a silent connection dropped {failed['silence']:.3f} s after the server "
        f"took it ({lifetime:.3f} s as its busy client saw it; deadline {handshake_timeout} "
        f"s); {late} late fires (worst {scheduler.max_overload:.3f} s), {compensated:.3f} s "
        "compensated"
    )
    assert late > 0  # the loop really was overloaded
    assert compensated == 0.0  # and no part of that was taken for a stall
    assert failed["reason"] == "timeout"
    assert handshake_timeout <= failed["silence"] <= handshake_timeout + 0.8  # two turns
    assert lifetime <= handshake_timeout + 1.5
