"""``pulsewire demo``: real peers, real faults, pulsewire against tuned kernel keepalive.

On loopback it starts a pulsewire server and one peer process per fault. Each peer also
holds a plain TCP socket to the demo, on which kernel keepalive is tuned as tightly as
Linux allows (1 s idle, 1 s interval, 1 probe). Then it injects the faults at once and
reports, for each, how long pulsewire and the kernel took to notice, and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from dataclasses import asdict, dataclass

from pulsewire.asyncio.connection import Connection
from pulsewire.asyncio.server import Server, serve
from pulsewire.core.events import Death
from pulsewire.core.policy import Policy

__all__ = ["FAULTS", "FaultResult", "run_demo"]

#: fault name -> how it is injected into the peer process
FAULTS: dict[str, str] = {
    "frozen (SIGSTOP)": "stop",
    "killed (SIGKILL)": "kill",
    "reset (RST)": "reset",
}

_KEEPALIVE = {"TCP_KEEPIDLE": 1, "TCP_KEEPINTVL": 1, "TCP_KEEPCNT": 1}


@dataclass
class FaultResult:
    fault: str
    pulsewire_reason: str | None  #: None: not detected within the demo's window
    pulsewire_seconds: float | None
    kernel_verdict: str  #: "still open", "reset", "eof", "timeout", ...
    kernel_seconds: float | None


class _Verdicts:
    """When each peer's pulsewire connection and plain socket died, and why."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.connected: dict[str, asyncio.Event] = {}
        self.pulsewire: dict[str, tuple[str, float]] = {}
        self.kernel: dict[str, tuple[str, float]] = {}
        self.changed = asyncio.Event()

    def ready(self, name: str) -> asyncio.Event:
        return self.connected.setdefault(name, asyncio.Event())

    def record(self, table: dict[str, tuple[str, float]], name: str, verdict: str) -> None:
        if name not in table:
            table[name] = (verdict, self.loop.time())
            self.changed.set()


class _DemoServer(Server):
    def __init__(self, verdicts: _Verdicts) -> None:
        self.verdicts = verdicts

    async def on_connect(self, connection: Connection) -> None:
        self.verdicts.ready("pw:" + connection.peer_name).set()

    async def on_dead(self, connection: Connection, death: Death) -> None:
        self.verdicts.record(self.verdicts.pulsewire, connection.peer_name, death.reason.value)


class _KeepaliveWatcher(asyncio.Protocol):
    """Holds the plain socket of one peer, with kernel keepalive tuned to the minimum."""

    def __init__(self, verdicts: _Verdicts) -> None:
        self.verdicts = verdicts
        self.name = ""
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in _KEEPALIVE.items():
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)

    def data_received(self, data: bytes) -> None:
        if not self.name:
            self.buffer += data
            if b"\n" in self.buffer:
                self.name = self.buffer.split(b"\n", 1)[0].decode()
                self.verdicts.ready("plain:" + self.name).set()

    def eof_received(self) -> bool:
        self.verdicts.record(self.verdicts.kernel, self.name, "eof")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        verdict = "eof" if exc is None else type(exc).__name__
        if isinstance(exc, ConnectionResetError):
            verdict = "reset"
        elif isinstance(exc, TimeoutError):
            verdict = "timeout"
        self.verdicts.record(self.verdicts.kernel, self.name, verdict)


async def _start_peer(
    name: str, port: int, plain_port: int, policy: Policy
) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pulsewire.cli.peer",
        "--port",
        str(port),
        "--plain-port",
        str(plain_port),
        "--name",
        name,
        "--interval",
        str(policy.interval),
        "--timeout",
        str(policy.timeout),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    line = await process.stdout.readline()
    if line.strip() != b"READY":
        raise RuntimeError(f"peer {name} failed to start")
    return process


def _inject(process: asyncio.subprocess.Process, how: str) -> None:
    sig = {"stop": signal.SIGSTOP, "kill": signal.SIGKILL, "reset": signal.SIGUSR1}[how]
    os.kill(process.pid, sig)


async def _reap(processes: list[asyncio.subprocess.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.wait(), 5)


async def run_demo(
    policy: Policy, *, faults: dict[str, str] | None = None, say: bool = True
) -> list[FaultResult]:
    """Run every fault once, concurrently; return one result per fault."""
    faults = FAULTS if faults is None else faults
    loop = asyncio.get_running_loop()
    verdicts = _Verdicts(loop)
    listener = await serve(_DemoServer(verdicts), "127.0.0.1", 0, policy=policy, name="demo")
    plain_server = await loop.create_server(lambda: _KeepaliveWatcher(verdicts), "127.0.0.1", 0)
    plain_port = plain_server.sockets[0].getsockname()[1]
    processes: list[asyncio.subprocess.Process] = []
    results: list[FaultResult] = []
    try:
        names = {fault: f"peer-{index}" for index, fault in enumerate(faults)}
        processes = list(
            await asyncio.gather(
                *(_start_peer(names[f], listener.port, plain_port, policy) for f in faults)
            )
        )
        async with asyncio.timeout(10):
            for name in names.values():
                await verdicts.ready("pw:" + name).wait()
                await verdicts.ready("plain:" + name).wait()
        if say:
            print(f"{len(faults)} peers connected; injecting faults. Policy: {policy}", flush=True)
        started = loop.time()
        for how, process in zip(faults.values(), processes, strict=True):
            _inject(process, how)
        window = policy.timeout + 2.0
        deadline = started + window
        while len(verdicts.pulsewire) < len(faults) and loop.time() < deadline:
            verdicts.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - loop.time()):
                    await verdicts.changed.wait()
        for fault in faults:
            name = names[fault]
            pw = verdicts.pulsewire.get(name)
            kernel = verdicts.kernel.get(name)
            results.append(
                FaultResult(
                    fault=fault,
                    pulsewire_reason=None if pw is None else pw[0],
                    pulsewire_seconds=None if pw is None else round(pw[1] - started, 3),
                    kernel_verdict="still open" if kernel is None else kernel[0],
                    kernel_seconds=None if kernel is None else round(kernel[1] - started, 3),
                )
            )
    finally:
        await _reap(processes)
        plain_server.close()
        await listener.close()
    return results


def format_table(results: list[FaultResult]) -> str:
    rows = [("fault", "pulsewire", "after", "kernel keepalive 1s/1s/1", "after")]
    for r in results:
        rows.append(
            (
                r.fault,
                r.pulsewire_reason or "not detected",
                "-" if r.pulsewire_seconds is None else f"{r.pulsewire_seconds:.2f} s",
                r.kernel_verdict,
                "-" if r.kernel_seconds is None else f"{r.kernel_seconds:.2f} s",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def main(policy: Policy, as_json: bool) -> int:
    results = asyncio.run(run_demo(policy, say=not as_json))
    if as_json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(format_table(results))
    return 0 if all(r.pulsewire_reason for r in results) else 1
