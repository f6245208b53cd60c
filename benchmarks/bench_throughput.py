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

Medians of ``--runs`` runs, the variants interleaved run by run; the ratios compare
medians of the same run. ``--smoke`` runs tiny counts for the test suite. The report goes
to standard output and to the ``## bench_throughput`` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import _common as common
from _common import loop_factory, median

HEADING = "bench_throughput: throughput"
CLAIM = (
    "on one connection, pulsewire sends small messages at least as fast as raw asyncio "
    "streams (one await per message) and at least twice as fast as websockets, moves bulk "
    "data at 0.8x raw streams or better, and keeps answering PINGs while a gigabyte is in "
    "flight."
)
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

Measured = dict[tuple[str, str], dict[str, list[dict[str, Any]]]]
HEADERS = (
    "loop",
    "workload",
    "raw msg/s",
    "websockets msg/s",
    "pulsewire msg/s",
    "pulsewire MB/s",
    "pulsewire / raw",
    "pulsewire / websockets",
    "PING RTT max during bulk, ms",
)


def measure_all(options: argparse.Namespace) -> Measured:
    """Every (loop, workload): each variant's runs, the variants interleaved run by run."""
    measured: Measured = {}
    for loop in options.loops:
        for work in workloads(options.smoke):
            results: dict[str, list[dict[str, Any]]] = {v: [] for v in options.variants}
            for _ in range(options.runs):
                for variant in options.variants:  # interleaved: noise hits all alike
                    results[variant].append(measure(variant, loop, work))
            measured[(loop, work.name)] = results
            rates = _rates(results)
            print(f"{loop} {work.name}: " + ", ".join(f"{v} {r:,.0f}/s" for v, r in rates.items()))
    return measured


def _rates(results: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    return {v: median(r["msg_per_s"] for r in runs) for v, runs in results.items()}


def section(
    measured: Measured, options: argparse.Namespace, command: str, started: datetime
) -> str:
    """The RESULTS.md section: one row per loop and workload, the ratios in the same row."""
    rows, verdicts = [], []
    for (loop, name), results in measured.items():
        rates = _rates(results)
        mine = rates.get("pulsewire", math.nan)
        pulsewire = results.get("pulsewire", [])
        rtt = median(r.get("rtt_max_ms") for r in pulsewire)
        rows.append(
            [
                loop,
                name,
                *(_rate(rates.get(v, math.nan)) for v in VARIANTS),
                _rate(median(r["mb_per_s"] for r in pulsewire), 1),
                *(_times(mine / rates.get(v, math.nan)) for v in ("raw", "websockets")),
                "-" if math.isnan(rtt) else f"{rtt:.1f}",
            ]
        )
        if not options.smoke:  # a smoke run's counts are too small to decide anything
            verdicts += _verdicts(loop, name, rates, pulsewire)
    revision = common.git_revision(common.RESULTS.parent, "src")
    return common.claim_section(
        CLAIM,
        common.markdown_table(HEADERS, rows),
        [_targets_finding(verdicts)],
        measured=common.measured_on(started, revision, ("uvloop", "websockets")),
        command=command,
        how=f"median of {options.runs} runs, variants interleaved; RTTs on the loop's clock, "
        "so under 1 ms reads 0.0 on uvloop (whole milliseconds)",
    )


def _rate(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _times(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"


def _verdicts(
    loop: str, workload: str, rates: dict[str, float], pulsewire: list[dict[str, Any]]
) -> list[tuple[str, str, bool]]:
    """The targets that this workload decides: (loop, what was measured, passed)."""
    if "pulsewire" not in rates:
        return []
    mine = rates["pulsewire"]
    checks: list[tuple[str, float, float]] = []  # what, ratio, at least
    if workload == "64 B":
        checks += [("64 B messages vs websockets", mine / rates.get("websockets", math.nan), 2.0)]
        checks += [("64 B messages vs raw streams", mine / rates.get("raw", math.nan), 1.0)]
    if workload == "bulk":
        checks += [("bulk vs raw streams", mine / rates.get("raw", math.nan), 0.8)]
    found = [
        (loop, f"{what} ≥ {least:g}x: {ratio:.2f}x", ratio >= least)
        for what, ratio, least in checks
        if not math.isnan(ratio)  # a baseline not run decides nothing
    ]
    if workload == "bulk":
        pongs = median(r.get("pongs", 0) for r in pulsewire)
        found.append((loop, f"PONGs while the bulk transfer was in flight: {pongs:.0f}", pongs > 0))
    return found


def _targets_finding(verdicts: list[tuple[str, str, bool]]) -> str:
    """``Targets: 8 of 8 pass``, or which failed: one line for the whole run."""
    if not verdicts:
        return "Targets: not decided by a smoke run (its counts are too small)."
    failed = [f"{loop}: {what}" for loop, what, ok in verdicts if not ok]
    text = f"Targets: {len(verdicts) - len(failed)} of {len(verdicts)} pass"
    return text + (f"; FAIL {'; '.join(failed)}." if failed else ".")


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
    common.quiet_structlog(logging.WARNING)  # stdout carries the receiver's port
    if options.role == "receiver":
        run_receiver(options)
        return
    if options.smoke:
        options.runs = 1
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python benchmarks/bench_throughput.py", *given])
    text = section(measure_all(options), options, command, datetime.now(UTC))
    print(f"\n## {HEADING}\n\n{text}")
    if not options.smoke and not options.no_write:
        common.replace_section(common.RESULTS, HEADING, text)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
