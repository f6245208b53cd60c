"""Local-stall guard: our own blocked event loop is never blamed on the peers.

The observer blocks its event loop for 3 s (a synchronous ``time.sleep``). Healthy peers
must not be declared dead for it, and a peer frozen at the same time must still be
convicted, within its timeout plus the stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import pytest

import pulsewire
from pulsewire.asyncio.scheduler import scheduler_for

# A peer that pings rarely (interval 5 s) and is patient (timeout 30 s): during the
# observer's stall nothing arrives from it, so only the guard can save it.
PEER = """
import asyncio, sys, logging
import pulsewire
logging.getLogger("pulsewire").setLevel(logging.ERROR)
async def main():
    c = await pulsewire.connect("127.0.0.1", int(sys.argv[1]), name=sys.argv[2],
                                policy=pulsewire.Policy(interval=5.0, timeout=30.0))
    print("READY", flush=True)
    await c.wait_dead()
asyncio.run(main())
"""

OBSERVER_POLICY = pulsewire.Policy(interval=0.2, timeout=1.0)
STALL = 3.0


class Observer(pulsewire.Server):
    def __init__(self) -> None:
        self.connected: dict[str, pulsewire.Connection] = {}
        self.deaths: dict[str, tuple[pulsewire.Death, float]] = {}
        self.any_death = asyncio.Event()
        self.all_connected = asyncio.Event()

    async def on_connect(self, connection: pulsewire.Connection) -> None:
        self.connected[connection.peer_name] = connection
        if len(self.connected) == 4:
            self.all_connected.set()

    async def on_dead(self, connection: pulsewire.Connection, death: pulsewire.Death) -> None:
        self.deaths[connection.peer_name] = (death, time.monotonic())
        self.any_death.set()


@contextlib.asynccontextmanager
async def peers(port: int, names: list[str]) -> AsyncIterator[dict[str, int]]:
    processes: list[asyncio.subprocess.Process] = []
    try:
        for name in names:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PEER, str(port), name, stdout=asyncio.subprocess.PIPE
            )
            processes.append(process)
            assert process.stdout is not None
            async with asyncio.timeout(15):
                assert (await process.stdout.readline()).strip() == b"READY"
        yield {name: p.pid for name, p in zip(names, processes, strict=True)}
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
            await process.wait()


@pytest.mark.asyncio
async def test_a_local_stall_kills_no_healthy_peer_but_a_frozen_one_is_still_convicted() -> None:
    observer = Observer()
    healthy = ["healthy-0", "healthy-1", "healthy-2"]
    async with (
        await pulsewire.serve(observer, policy=OBSERVER_POLICY, name="observer") as listener,
        peers(listener.port, [*healthy, "frozen"]) as pids,
    ):
        async with asyncio.timeout(10):
            await observer.all_connected.wait()
        scheduler = scheduler_for(asyncio.get_running_loop())
        stalled_before = scheduler.stalled

        os.kill(pids["frozen"], signal.SIGSTOP)
        frozen_at = time.monotonic()
        time.sleep(STALL)  # noqa: ASYNC251 -- the point: block the observer's event loop

        async with asyncio.timeout(OBSERVER_POLICY.timeout + STALL + 5):
            while "frozen" not in observer.deaths:
                observer.any_death.clear()
                await observer.any_death.wait()
        death, died_at = observer.deaths["frozen"]
        detected = died_at - frozen_at
        print(f"frozen peer convicted after {detected:.3f} s (stall {STALL} s)")
        assert death.reason is pulsewire.Reason.TIMEOUT
        assert death.source is pulsewire.Source.HEARTBEAT
        # Its last word came at most one follower ping (0.25 s) before the freeze. Without
        # the guard it would be convicted the moment the loop woke (about STALL s after
        # the freeze); with it, the stall beyond the 0.1 s threshold is not counted, so
        # the verdict comes a whole timeout later, less that last gap and the threshold.
        earliest = STALL + OBSERVER_POLICY.timeout - 0.25 - scheduler.STALL_THRESHOLD - 0.05
        assert earliest <= detected <= OBSERVER_POLICY.timeout + STALL + 0.5

        # Healthy peers stay alive, several timeouts after the stall.
        await asyncio.sleep(3 * OBSERVER_POLICY.timeout)
        assert set(observer.deaths) == {"frozen"}
        for name in healthy:
            assert observer.connected[name].state is pulsewire.State.ALIVE
            assert observer.connected[name].stats().pongs_received > 0
        assert scheduler.stalled - stalled_before >= STALL - OBSERVER_POLICY.timeout
