"""Throughput on one connection: pulsewire against raw asyncio streams and websockets.

What is measured, per variant and event loop (asyncio, uvloop):

- ``64 B``: 200,000 messages of 64 bytes, sent back to back by one task;
- ``1 KiB``: 100,000 messages of 1 KiB;
- ``bulk``: 1 GiB as 1 MiB messages;
- during the bulk transfer, pulsewire's PING RTT (max and p50 of the PONGs that came back
  while the gigabyte was in flight): control frames must interleave with the data.

The receiver is a separate process (``--role receiver``) that counts messages and bytes
and answers one ``DONE`` message after the last; the sender's clock runs from the first
send to that answer. Variants:

- **raw streams**: ``asyncio`` streams with a 4-byte length prefix; the receiver awaits
  ``readexactly`` twice per message (one await per message, as hand-written code does);
- **websockets**: the library's asyncio API, binary messages, compression off;
- **pulsewire**: ``connect``/``serve`` with the default policy (``interval=1``) for the
  message runs, and ``interval=0.05`` in strict mode (``Evidence.PONG``) on the sender for
  the bulk run, so that it pings every 50 ms while the data flows (by default any bytes
  are evidence, and a busy connection sends no PING at all).

Medians of ``--runs`` runs; ratios are taken within the same run. ``--smoke`` runs tiny
counts for the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_revision, loop_factory, markdown_table, median, replace_section, versions

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
VARIANTS = ("raw", "websockets", "pulsewire")
LOOPS = ("asyncio", "uvloop")
_LENGTH = struct.Struct("!I")
_DONE = b"DONE"


@dataclass(frozen=True)
class Workload:
    name: str
    count: int
    size: int


def workloads(smoke: bool) -> list[Workload]:
    if smoke:
        return [Workload("64 B", 2_000, 64), Workload("bulk", 16, 1 << 20)]
    return [
        Workload("64 B", 200_000, 64),
        Workload("1 KiB", 100_000, 1024),
        Workload("bulk", 1024, 1 << 20),
    ]


# ---------------------------------------------------------------- receiver process


async def receive_raw(port_ready: Callable[[int], None], count: int) -> None:
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(count):
            (length,) = _LENGTH.unpack(await reader.readexactly(4))
            await reader.readexactly(length)
        writer.write(_LENGTH.pack(len(_DONE)) + _DONE)
        await writer.drain()
        done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_ready(server.sockets[0].getsockname()[1])
    await done.wait()
    server.close()


async def receive_websockets(port_ready: Callable[[int], None], count: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    done = asyncio.Event()

    async def handle(websocket: ServerConnection) -> None:
        for _ in range(count):
            await websocket.recv()
        await websocket.send(_DONE)
        done.set()
        await websocket.wait_closed()

    async with serve(handle, "127.0.0.1", 0, max_size=None, compression=None) as server:
        port_ready(next(iter(server.sockets)).getsockname()[1])
        await done.wait()


async def receive_pulsewire(port_ready: Callable[[int], None], count: int) -> None:
    import pulsewire

    done = asyncio.Event()

    async def handle(connection: pulsewire.Connection) -> None:
        for _ in range(count):
            await connection.recv()
        await connection.send(_DONE)
        done.set()
        await connection.wait_dead()

    limits = pulsewire.Limits(max_message_size=2 << 20)
    policy = pulsewire.Policy(min_peer_interval=0.01)
    async with await pulsewire.serve(handle, policy=policy, limits=limits) as listener:
        port_ready(listener.port)
        await done.wait()


RECEIVERS = {"raw": receive_raw, "websockets": receive_websockets, "pulsewire": receive_pulsewire}


def run_receiver(args: argparse.Namespace) -> None:
    def ready(port: int) -> None:
        print(port, flush=True)

    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(RECEIVERS[args.variant](ready, args.count))


# ---------------------------------------------------------------- sender (this process)


async def send_raw(port: int, work: Workload) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frame = _LENGTH.pack(work.size) + os.urandom(work.size)
    started = time.perf_counter()
    for _ in range(work.count):
        writer.write(frame)
        if writer.transport.get_write_buffer_size() > 1 << 20:
            await writer.drain()
    await writer.drain()
    (length,) = _LENGTH.unpack(await reader.readexactly(4))
    assert await reader.readexactly(length) == _DONE
    elapsed = time.perf_counter() - started
    writer.close()
    return {"seconds": elapsed}


async def send_websockets(port: int, work: Workload) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    payload = os.urandom(work.size)
    async with connect(f"ws://127.0.0.1:{port}", max_size=None, compression=None) as ws:
        started = time.perf_counter()
        for _ in range(work.count):
            await ws.send(payload)
        assert await ws.recv() == _DONE
        return {"seconds": time.perf_counter() - started}


async def send_pulsewire(port: int, work: Workload) -> dict[str, Any]:
    import pulsewire

    bulk = work.name == "bulk"
    # Bulk: strict mode, so the sender pings every 50 ms although DATA and CREDIT flow
    # (with the default, any bytes are evidence and a busy connection sends no PING).
    policy = (
        pulsewire.Policy(interval=0.05, timeout=5.0, evidence=pulsewire.Evidence.PONG)
        if bulk
        else pulsewire.Policy(interval=1.0, timeout=5.0)
    )
    limits = pulsewire.Limits(max_message_size=2 << 20)
    connection = await pulsewire.connect("127.0.0.1", port, policy=policy, limits=limits)
    payload = os.urandom(work.size)
    before = connection.stats()
    started = time.perf_counter()
    for _ in range(work.count):
        await connection.send(payload)
    assert await connection.recv() == _DONE
    elapsed = time.perf_counter() - started
    after = connection.stats()
    await connection.close()
    result: dict[str, Any] = {"seconds": elapsed}
    if bulk:
        result["pongs"] = after.pongs_received - before.pongs_received
        result["rtt_max_ms"] = None if after.rtt_max is None else after.rtt_max * 1000
        result["rtt_p50_ms"] = None if after.rtt_p50 is None else after.rtt_p50 * 1000
    return result


SENDERS: dict[str, Callable[[int, Workload], Awaitable[dict[str, Any]]]] = {
    "raw": send_raw,
    "websockets": send_websockets,
    "pulsewire": send_pulsewire,
}


def measure(variant: str, loop: str, work: Workload) -> dict[str, Any]:
    """One run: a receiver process, this process sending; returns rates."""
    receiver = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--role",
            "receiver",
            "--variant",
            variant,
            "--loop",
            loop,
            "--count",
            str(work.count),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            result = runner.run(asyncio.wait_for(SENDERS[variant](port, work), 300))
        receiver.wait(30)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    seconds = result["seconds"]
    result["msg_per_s"] = work.count / seconds
    result["mb_per_s"] = work.count * work.size / seconds / 1e6
    return result


# ---------------------------------------------------------------- report


def quiet_logs() -> None:
    """Warnings and worse, to stderr: stdout carries the receiver's port."""
    import logging

    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def run(options: argparse.Namespace) -> str:
    rows: list[list[str]] = []
    ratio_rows: list[list[str]] = []
    verdicts: list[str] = []
    for loop in options.loops:
        for work in workloads(options.smoke):
            results: dict[str, list[dict[str, Any]]] = {v: [] for v in options.variants}
            for _ in range(options.runs):
                for variant in options.variants:  # interleaved: noise hits all alike
                    results[variant].append(measure(variant, loop, work))
            rates = {v: median(r["msg_per_s"] for r in rs) for v, rs in results.items()}
            for variant, runs in results.items():
                rtt = median(r.get("rtt_max_ms") for r in runs)
                rows.append(
                    [
                        loop,
                        work.name,
                        variant,
                        f"{rates[variant]:,.0f}",
                        f"{median(r['mb_per_s'] for r in runs):,.1f}",
                        "-" if rtt != rtt else f"{rtt:.1f}",
                    ]
                )
            if "pulsewire" in rates:
                ratio_rows.append(
                    [
                        loop,
                        work.name,
                        *(
                            f"{rates['pulsewire'] / rates[v]:.2f}x" if v in rates else "-"
                            for v in ("raw", "websockets")
                        ),
                    ]
                )
            if not options.smoke:  # a smoke run's counts are too small to decide anything
                verdicts += _verdicts(loop, work, rates, results)
            print(f"{loop} {work.name}: " + ", ".join(f"{v} {r:,.0f}/s" for v, r in rates.items()))
    table = markdown_table(
        ["loop", "workload", "variant", "messages/s", "MB/s", "PING RTT max during bulk, ms"],
        rows,
    )
    ratios = markdown_table(
        ["loop", "workload", "pulsewire / raw", "pulsewire / websockets"], ratio_rows
    )
    info = versions()
    return (
        f"`python benchmarks/bench_throughput.py{' --smoke' if options.smoke else ''}` — "
        f"{time.strftime('%Y-%m-%d')}, Python {info['python']}, pulsewire {info['pulsewire']} "
        f"({git_revision(RESULTS.parent.parent, 'src')}), uvloop {info['uvloop']}, websockets "
        f"{info['websockets']}, {os.cpu_count()} cores; median of {options.runs} runs, variants "
        f"interleaved. RTTs are on the loop's clock: uvloop's ticks in milliseconds, so an RTT "
        f"under 1 ms reads 0.0 there.\n\n{table}\n\n"
        f"Ratios (same run):\n\n{ratios}\n\nTargets:\n\n"
        + ("\n".join(verdicts) or "- not decided by a smoke run")
        + "\n"
    )


def _verdicts(
    loop: str, work: Workload, rates: dict[str, float], results: dict[str, list[dict[str, Any]]]
) -> list[str]:
    """The issue's targets that this workload decides, as PASS/FAIL lines."""
    if "pulsewire" not in rates:
        return []
    mine = rates["pulsewire"]
    checks: list[tuple[str, float, float]] = []  # what, ratio, at least
    if work.name == "64 B":
        checks += [("64 B messages vs websockets", mine / rates.get("websockets", math.nan), 2.0)]
        checks += [("64 B messages vs raw streams", mine / rates.get("raw", math.nan), 1.0)]
    if work.name == "bulk":
        checks += [("bulk vs raw streams", mine / rates.get("raw", math.nan), 0.8)]
    lines = [
        f"- {loop}: {'PASS' if ratio >= least else 'FAIL'}: {what} ≥ {least:g}x: {ratio:.2f}x"
        for what, ratio, least in checks
        if ratio == ratio  # a baseline not run decides nothing
    ]
    if work.name == "bulk":
        pongs = median(r.get("pongs", 0) for r in results["pulsewire"])
        lines.append(
            f"- {loop}: {'PASS' if pongs > 0 else 'FAIL'}: PINGs answered while the bulk "
            f"transfer was in flight (control frames interleave): {pongs:.0f} PONGs (median)"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["sender", "receiver"], default="sender")
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--loops", nargs="+", choices=LOOPS, default=list(LOOPS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny counts, one run")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    options = parser.parse_args(argv)
    quiet_logs()
    if options.role == "receiver":
        run_receiver(options)
        return
    if options.smoke:
        options.runs = 1
    report = run(options)
    print(report)
    if not options.smoke and not options.no_write:
        replace_section(RESULTS, "bench_throughput", report, "# pulsewire benchmark results")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
