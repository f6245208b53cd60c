"""A bench_idle worker process: holds one side and measures it, window by window.

The orchestrator (:mod:`idle.harness`) starts two workers per measurement, a server and a
client (``bench_idle.py --worker server|client ...``), and speaks to each with one JSON
object per line on stdin; each command gets one JSON line back on stdout:

- ``connect`` (client): open N connections, ``batch`` at a time, within ``timeout``;
- ``wait`` (server): wait until N connections are ready;
- ``heartbeat``: start the heartbeat of the variants that start it once all are open;
- ``begin`` / ``end``: a measurement window; ``end`` answers the window's metrics;
- ``quit``, or stdin closing: exit at once (``os._exit``: closing thousands of
  connections in order is not what is measured).

A worker also exits after ``--max-lifetime`` seconds, whatever happens upstream. Measured
over each window: CPU (``getrusage``; the evidence sampler's own CPU is measured apart
so that it can be subtracted), RSS, heartbeat counters, the longest silence the sampler
saw, deadline lateness, loop lag (a 10 ms ``call_later`` probe), GC collections and
pauses, ``gc.get_count()`` and the number of tracked objects.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

import _common as common

from idle.variants import SIDES, Side

SETTLE = 0.3  #: pause after the pre-window snapshots so their loop stall is not measured
SAMPLE_EVERY = 1.0  #: seconds between two rounds of the evidence sampler


class Worker:
    """Runs one side and answers the orchestrator's commands, one JSON line each."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.loop = side.loop
        self.probe = common.LoopLagProbe(self.loop)
        self.gc = common.GcMonitor()
        self.rss_idle = 0
        self.sampler_cpu = 0.0
        self.max_silence = 0.0
        self.suspects_seen = 0
        self._sampler: asyncio.Task[None] | None = None
        self._begin: dict[str, Any] = {}
        self._profiler: cProfile.Profile | None = None

    async def serve_commands(self, ready: dict[str, Any]) -> None:
        self.probe.start()
        self.gc.install()
        self.rss_idle = common.rss_bytes()
        common.emit({"event": "ready", "rss_idle": self.rss_idle, "pid": os.getpid(), **ready})
        reader = asyncio.StreamReader()
        await self.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            command = json.loads(line)
            if command["cmd"] == "quit":
                break
            handler = getattr(self, "cmd_" + command["cmd"])
            common.emit(await handler(command))
        sys.stdout.flush()
        os._exit(0)  # closing thousands of connections in order is not what is measured

    async def cmd_connect(self, command: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        deadline = self.loop.time() + command["timeout"]
        ok = failed = 0
        errors: list[str] = []
        while ok + failed < command["n"] and self.loop.time() < deadline:
            size = min(command["batch"], command["n"] - ok - failed)
            opening = [self.side.open_one(command["host"], command["port"]) for _ in range(size)]
            results = await asyncio.gather(*opening, return_exceptions=True)
            batch_errors = [repr(r) for r in results if isinstance(r, BaseException)]
            failed += len(batch_errors)
            ok += len(results) - len(batch_errors)
            errors += batch_errors[: 3 - len(errors)]
            if len(batch_errors) == len(results):
                break  # nothing gets through: do not wait out every timeout
        seconds = time.perf_counter() - started
        return {
            "event": "connected",
            "ok": ok,
            "failed": failed,
            "seconds": seconds,
            "errors": errors,
        }

    async def cmd_wait(self, command: dict[str, Any]) -> dict[str, Any]:
        deadline = self.loop.time() + command["timeout"]
        # Polls a count that transport callbacks keep; an Event per variant is not worth it.
        while self.side.ready_count() < command["n"] and self.loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return {"event": "accepted", "count": self.side.ready_count()}

    async def cmd_heartbeat(self, command: dict[str, Any]) -> dict[str, Any]:
        await self.side.start_heartbeat()
        return {"event": "heartbeat"}

    async def cmd_begin(self, command: dict[str, Any]) -> dict[str, Any]:
        begin: dict[str, Any] = {"rss": common.rss_bytes(), "gc_count": gc.get_count()}
        begin["profile"] = command.get("profile")
        begin["objects"] = len(gc.get_objects())
        await asyncio.sleep(SETTLE)
        begin["counters"] = await self.side.counters()
        self.probe.samples.start()
        self.gc.start()
        self.side.window_started()
        self.sampler_cpu, self.max_silence, self.suspects_seen = 0.0, 0.0, 0
        self._sampler = self.loop.create_task(self._sample_forever())
        if begin["profile"]:
            self._profiler = cProfile.Profile()
            self._profiler.enable()
        begin["cpu"], begin["time"] = common.cpu_seconds(), time.perf_counter()
        self._begin = begin
        return {"event": "begun"}

    async def cmd_end(self, command: dict[str, Any]) -> dict[str, Any]:
        snapshot_cpu = time.process_time()
        counters = await self.side.counters()
        self.sampler_cpu += time.process_time() - snapshot_cpu
        cpu, now = common.cpu_seconds(), time.perf_counter()
        if self._profiler is not None:
            self._profiler.disable()
            self._profiler.dump_stats(self._begin["profile"])
            self._profiler = None
        self.probe.samples.stop()
        self.gc.stop()
        extra = self.side.window_ended()
        if self._sampler is not None:
            self._sampler.cancel()
        begin = self._begin
        return {
            "event": "metrics",
            "conns": len(self.side.conns) - counters["closed"],
            "window": now - begin["time"],
            "cpu": cpu - begin["cpu"],
            "sampler_cpu": self.sampler_cpu,
            "rss_idle": self.rss_idle,
            "rss_begin": begin["rss"],
            "rss_end": common.rss_bytes(),
            "counters": {k: counters[k] - begin["counters"][k] for k in counters},
            "lifetime": counters,
            "max_silence": self.max_silence if self.side.has_heartbeat else None,
            "suspects_seen": self.suspects_seen,
            "deadline_lateness": self._lateness(),
            "loop_lag": common.summary(self.probe.samples.values),
            "gc": self.gc.report(),
            "gc_count": [begin["gc_count"], gc.get_count()],
            "objects": [begin["objects"], len(gc.get_objects())],
            **extra,
        }

    def _lateness(self) -> dict[str, float] | None:
        samples = self.side.lateness
        if samples is None:
            return None
        return common.summary([max(0.0, value) for value in samples.values])

    async def _sample_forever(self) -> None:
        """Once a second, read the silence of up to ``sample_per_second`` connections, in
        rotation and in slices of ``slice`` per turn of the loop."""
        cursor = 0
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            conns = self.side.conns
            count = min(len(conns), self.side.sample_per_second)
            picked = [conns[(cursor + i) % len(conns)] for i in range(count)]
            cursor += count
            for start in range(0, count, self.side.slice):
                self._sample(picked[start : start + self.side.slice])
                await asyncio.sleep(0)

    def _sample(self, conns: Sequence[Any]) -> None:
        started = time.process_time()
        now = self.loop.time()
        inspect = self.side.inspect
        for conn in conns:
            silence, suspect = inspect(conn, now)
            if silence is not None and silence > self.max_silence:
                self.max_silence = silence
            self.suspects_seen += suspect
        self.sampler_cpu += time.process_time() - started


async def _worker_main(role: str, variant: str, n: int, host: str, max_lifetime: float) -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(max_lifetime, os._exit, 3)  # a bound, whatever happens upstream
    soft, hard = common.raise_nofile(n + 256)
    if soft < n + 64:
        raise RuntimeError(f"RLIMIT_NOFILE: hard limit {hard} is too low for {n} connections")
    side = SIDES[variant](loop, role)
    ready: dict[str, Any] = {"nofile_hard": hard}
    if role == "server":
        ready["port"] = await side.start_server(host)
    await Worker(side).serve_commands(ready)


def run_worker(role: str, variant: str, loop: str, n: int, host: str, max_lifetime: float) -> None:
    """The whole life of a worker process; it reports any failure as one ``error`` line."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when we stop
    try:
        with asyncio.Runner(loop_factory=common.loop_factory(loop)) as runner:
            runner.run(_worker_main(role, variant, n, host, max_lifetime))
    except BaseException:
        common.emit({"event": "error", "error": traceback.format_exc()[-3000:]})
        os._exit(1)
