"""Detection under load: one frozen peer among 10,000 live connections.

The benchmark process is the observer: a pulsewire server on one event loop. A client
process holds ``--n`` idle pulsewire connections to it (1 s heartbeat) and a second
process holds one more, the victim. Once everything is connected and warm, the victim is
frozen with SIGSTOP and the observer's verdict on it is timed from that instant. The
target: DEAD(TIMEOUT) within the policy's timeout + 100 ms, with no false death among the
others. The observer also reports its scheduler's lateness and stall accounting (where the
build has them). There is no baseline variant: the bound is the policy's own timeout.

``--smoke`` runs with 50 connections and one run, for the test suite. The report goes to
standard output and to the ``## bench_detection_under_load`` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import _common as common
from _common import loop_factory, median, raise_nofile

import pulsewire
from pulsewire.asyncio.scheduler import scheduler_for

HEADING = "bench_detection_under_load: detection under load"
CLAIM = (
    "among 10,000 live idle connections, a frozen peer (SIGSTOP) is declared DEAD(TIMEOUT) "
    "within the policy's timeout + 100 ms, and no other connection dies."
)
POLICY = pulsewire.Policy(interval=1.0, timeout=3.0)
BATCH = 200  # concurrent connects: keeps the handshakes well inside their deadline


# ---------------------------------------------------------------- the peer processes


async def hold(port: int, count: int, name: str) -> None:
    """Open ``count`` connections in batches, say READY, and hold them until stdin closes."""
    connections: list[pulsewire.Connection] = []
    for start in range(0, count, BATCH):
        batch = min(BATCH, count - start)
        connections += await asyncio.gather(
            *(pulsewire.connect("127.0.0.1", port, policy=POLICY, name=name) for _ in range(batch))
        )
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    lost = sum(1 for connection in connections if connection.death is not None)
    print(f"LOST {lost}", flush=True)


def run_peer(args: argparse.Namespace) -> None:
    raise_nofile(args.n + 100)
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(hold(args.port, args.n, args.name))


# ---------------------------------------------------------------- the observer


class Observer(pulsewire.Server):
    def __init__(self) -> None:
        self.connected = 0
        self.victim: pulsewire.Connection | None = None
        self.victim_ready = asyncio.Event()
        self.deaths: list[tuple[str, pulsewire.Death, float]] = []
        self.victim_dead = asyncio.Event()

    async def on_connect(self, connection: pulsewire.Connection) -> None:
        self.connected += 1
        if connection.peer_name == "victim":
            self.victim = connection
            self.victim_ready.set()

    async def on_dead(self, connection: pulsewire.Connection, death: pulsewire.Death) -> None:
        self.deaths.append((connection.peer_name, death, time.monotonic()))
        if connection.peer_name == "victim":
            self.victim_dead.set()


def spawn(role: str, port: int, n: int, loop: str) -> subprocess.Popen[str]:
    argv = [sys.executable, __file__, "--role", role, "--port", str(port), "--n", str(n)]
    return subprocess.Popen(
        [*argv, "--name", role, "--loop", loop],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
    process.communicate(timeout=30)


async def one_run(n: int, loop_name: str, warmup: float) -> dict[str, Any]:
    observer = Observer()
    raise_nofile(n + 200)
    listener = await pulsewire.serve(observer, policy=POLICY, name="observer", backlog=4096)
    scheduler = scheduler_for(asyncio.get_running_loop())
    crowd = spawn("clients", listener.port, n, loop_name)
    victim = spawn("victim", listener.port, 1, loop_name)
    try:
        for process in (crowd, victim):
            assert process.stdout is not None
            line = await asyncio.to_thread(process.stdout.readline)
            if line.strip() != "READY":
                raise RuntimeError(f"a peer process failed to connect: {line!r}")
        async with asyncio.timeout(30):
            await observer.victim_ready.wait()
        await asyncio.sleep(warmup)  # steady state: every connection past its first pings
        lateness_before = scheduler.max_lateness
        frozen_at = time.monotonic()
        os.kill(victim.pid, signal.SIGSTOP)
        async with asyncio.timeout(POLICY.timeout + 10):
            await observer.victim_dead.wait()
        _, death, died_at = next(d for d in observer.deaths if d[0] == "victim")
        others = [d for d in observer.deaths if d[0] != "victim"]
        return {
            "connections": observer.connected,
            "detected_s": died_at - frozen_at,
            "reason": death.reason.value,
            "silence_s": death.silence,
            "false_deaths": len(others),
            "max_lateness_ms": max(scheduler.max_lateness, lateness_before) * 1000,
            # Stall accounting is the scheduler's own: a build without it reports n/a.
            "stalled_s": getattr(scheduler, "stalled", math.nan),
        }
    finally:
        stop(victim)
        stop(crowd)
        await listener.close()


def measure(n: int, loop: str, warmup: float) -> dict[str, Any]:
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(one_run(n, loop, warmup))


HEADERS = (
    "loop",
    "connections held",
    "detection s (median / max)",
    "detection / timeout (median / max)",
    "reason",
    "false deaths",
    "scheduler lateness max ms",
    "stall not counted s",
)


def run(options: argparse.Namespace, command: str) -> str:
    """Measure every loop; return the RESULTS.md section."""
    started = datetime.now(UTC)
    rows, failed = [], []
    bound = POLICY.timeout + 0.1
    for loop in options.loops:
        results = [measure(options.n, loop, options.warmup) for _ in range(options.runs)]
        detected = [r["detected_s"] for r in results]
        ok = all(r["reason"] == "timeout" and r["detected_s"] <= bound for r in results)
        false_deaths = sum(r["false_deaths"] for r in results)
        rows.append(
            [
                loop,
                f"{results[0]['connections']:,}",
                f"{median(detected):.3f} / {max(detected):.3f}",
                f"{median(detected) / POLICY.timeout:.2f}x / {max(detected) / POLICY.timeout:.2f}x",
                ", ".join(sorted({r["reason"] for r in results})),
                str(false_deaths),
                f"{median(r['max_lateness_ms'] for r in results):.1f}",
                f"{median(r['stalled_s'] for r in results):.3f}",
            ]
        )
        if not ok or false_deaths:
            failed.append(loop)
        print(rows[-1], flush=True)
    verdict = (
        f"FAIL on {' and '.join(failed)}" if failed else "PASS on " + " and ".join(options.loops)
    )
    return common.claim_section(
        CLAIM,
        common.markdown_table(HEADERS, rows),
        [
            f"Target: {verdict}: DEAD(TIMEOUT) within {bound:.1f} s (timeout + 100 ms) in every "
            "run, no false death. No baseline variant: the bound is the policy's timeout.",
        ],
        measured=common.measured_on(
            started, common.git_revision(common.RESULTS.parent, "src"), ("uvloop",)
        ),
        command=command,
        how=f"{options.runs} runs per loop, `Policy(interval={POLICY.interval:g}, "
        f"timeout={POLICY.timeout:g})`, detection timed from SIGSTOP",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["observer", "clients", "victim"], default="observer")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default="")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--loops", nargs="+", default=["asyncio", "uvloop"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    options = parser.parse_args(argv)
    common.quiet_structlog(logging.ERROR)
    if options.role != "observer":
        run_peer(options)
        return
    if options.smoke:
        options.n, options.runs, options.warmup, options.loops = 50, 1, 1.5, ["asyncio"]
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python benchmarks/bench_detection_under_load.py", *given])
    text = run(options, command)
    print(f"\n## {HEADING}\n\n{text}")
    if not options.smoke and not options.no_write:
        common.replace_section(common.RESULTS, HEADING, text)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
