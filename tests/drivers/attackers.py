"""Hostile and healthy peers for the overload tests, run as a subprocess (signal it by PID).

Every mode connects to ``127.0.0.1:PORT`` only, is bounded in count and in time, and
writes one JSON object per line on stdout (flushed at once), ending with ``{"done": ...}``.
Times are ``time.monotonic()``, one clock for every process of the machine.

    attackers.py flood --port P --count N --over S [--silent K]
        N raw-socket peers, started evenly over S seconds: each sends a HELLO with absurd
        claims (ping interval 1 us, timeout one day, 2 GiB windows), then PINGs as fast as
        the socket takes them, until the server closes it. One line per flooder:
        {"flooder": i, "started": t, "closed": t, "code": close code or null}. With
        ``--silent K``, K connections opened while the flood runs say nothing at all:
        {"silent": i, "opened": t, "closed": t, "code": ...}.
    attackers.py slowloris --port P --count N --frames K --prefix B --every S --for T
        N raw-socket peers that handshake, send the first B bytes of a message as fast as
        they can, then one 1-byte chunk every S seconds (the first K of them: the header of
        a 16 KiB chunk, then one byte of it every S seconds), for at most T seconds:
        {"slowloris": i, "frame": bool, "started": t (the first chunk), "closed": t,
        "code": ...}.
    attackers.py connect-flood --port P --attempts N --for T
        N connection attempts as fast as they go (non-blocking, 1024 at a time, from
        127.0.0.2-9, each given up after 1 s), each held open and silent until the server
        closes it or T seconds pass: {"attempted": n, "connected": n, "failed": n,
        "closed_by_server": n, "codes": {close code: count}}.
    attackers.py healthy --port P --count N --interval S --for T
        N pulsewire clients (policy interval S, timeout 10 S) that ping on demand every
        S/2 seconds for T seconds: {"rtt": seconds, "client": i} per answer,
        {"state": "suspect"|"dead", "client": i, ...} on any change, then {"done": ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import time
from typing import Any

import msgspec

import pulsewire
from pulsewire.core.codec import FrameDecoder
from pulsewire.core.frames import (
    FEATURES,
    PREAMBLE,
    Close,
    FrameKind,
    Hello,
    encode_control,
    frame_header,
    ping_frame,
)
from pulsewire.errors import ProtocolError


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


ABSURD_HELLO = PREAMBLE + encode_control(
    FrameKind.HELLO,
    Hello(
        interval=1e-6,
        min_interval=1e-6,
        timeout=86_400.0,
        max_frame_size=2**31,
        max_message_size=2**31,
        window=2**31,
        name="absurd",
        features=int(FEATURES),
    ),
)
PINGS = b"".join(ping_frame(seq, 0.5) for seq in range(1, 3001))  # 63 KB of PINGs


class RawPeer(asyncio.Protocol):
    """One raw connection: what the server sends is parsed as it arrives (its HELLO: the
    handshake is done; its CLOSE: the code), and when it ends is recorded."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock  # ours: read to the end even after asyncio saw a failed write
        self.decoder = FrameDecoder(2**31)
        self.hello = asyncio.Event()
        self.code: int | None = None
        self.ended: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except ProtocolError:
            return
        for frame in frames:
            if frame.kind is FrameKind.HELLO:
                self.hello.set()
            elif frame.kind is FrameKind.CLOSE and self.code is None:
                self.code = msgspec.msgpack.decode(frame.payload, type=Close).code

    def eof_received(self) -> None:
        self._end()

    def connection_lost(self, exc: Exception | None) -> None:
        # A write that failed (the server reset the connection, having closed it with our
        # flood unread) ends the transport before it reads what came first: read it now,
        # before asyncio closes the socket.
        if exc is not None and self.sock is not None:
            with contextlib.suppress(OSError):
                while data := self.sock.recv(65536):
                    self.data_received(data)
        self._end()
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def _end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(time.monotonic())

    async def write(self, data: bytes) -> bool:
        """Write, and wait while the kernel's buffers are full; False once the connection
        is closing (nothing written)."""
        assert self.transport is not None
        if self.transport.is_closing():
            await asyncio.sleep(0)
            return False
        self.transport.write(data)
        await self.writable.wait()
        await asyncio.sleep(0)  # let the other peers and the reads have their turn
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def closed_by(self, deadline: float) -> float | None:
        """When the server ended the stream; None if it did not by ``deadline``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                return await asyncio.shield(self.ended)
        return None


async def open_raw(port: int) -> RawPeer:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        _, peer = await loop.create_connection(lambda: RawPeer(sock), sock=sock)
    except BaseException:
        sock.close()
        raise
    return peer


async def flooder(index: int, port: int, delay: float, deadline: float) -> None:
    await asyncio.sleep(delay)
    peer = await open_raw(port)
    await peer.write(ABSURD_HELLO)
    started = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
            await peer.hello.wait()
            started = time.monotonic()
            while await peer.write(PINGS):
                pass
    closed = await peer.closed_by(deadline)
    peer.close()
    say(flooder=index, started=started, closed=closed, code=peer.code)


async def silent(index: int, port: int, delay: float, deadline: float) -> None:
    await asyncio.sleep(delay)
    peer = await open_raw(port)
    opened = time.monotonic()
    closed = await peer.closed_by(deadline)
    peer.close()
    say(silent=index, opened=opened, closed=closed, code=peer.code)


async def run_flood(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.over + 20.0
    tasks = [
        flooder(i, args.port, args.over * i / max(1, args.count), deadline)
        for i in range(args.count)
    ]
    tasks += [
        silent(i, args.port, args.over * (i + 0.5) / max(1, args.silent), deadline)
        for i in range(args.silent)
    ]
    await asyncio.gather(*tasks)
    say(done="flood")


async def slowloris(index: int, args: argparse.Namespace, deadline: float) -> None:
    frame = index < args.frames
    peer = await open_raw(args.port)
    await peer.write(ABSURD_HELLO)
    started = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
            await peer.hello.wait()
            started = time.monotonic()
            chunk = 16 * 1024
            for _ in range(args.prefix // chunk):  # a message begun in earnest ...
                await peer.write(frame_header(FrameKind.DATA, 0, chunk) + bytes(chunk))
            dribble = frame_header(FrameKind.DATA, 0, 1) + b"x"  # ... then a byte at a time
            if frame:
                await peer.write(frame_header(FrameKind.DATA, 0, chunk))
                dribble = b"x"
            while not peer.ended.done():
                await asyncio.sleep(args.every)
                if not await peer.write(dribble):
                    break
    closed = await peer.closed_by(deadline)
    peer.close()
    say(slowloris=index, frame=frame, started=started, closed=closed, code=peer.code)


async def run_slowloris(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + getattr(args, "for")
    await asyncio.gather(*(slowloris(i, args, deadline) for i in range(args.count)))
    say(done="slowloris")


async def run_connect_flood(args: argparse.Namespace) -> None:
    """Connection attempts as fast as they go, each held until the server lets it go."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + getattr(args, "for")
    codes: dict[str, int] = {}
    connected = closed_by_server = failed = 0
    held: set[asyncio.Task[None]] = set()

    async def hold(sock: socket.socket) -> None:
        nonlocal closed_by_server
        _, peer = await loop.create_connection(lambda: RawPeer(sock), sock=sock)
        if await peer.closed_by(deadline) is not None:
            closed_by_server += 1
            key = str(peer.code)
            codes[key] = codes.get(key, 0) + 1
        peer.close()

    async def attempt(i: int) -> None:
        nonlocal connected, failed
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.bind((f"127.0.0.{2 + i % 8}", 0))  # spread over sources: ports for all
            async with asyncio.timeout(1.0):  # a full backlog drops SYNs: give up soon
                await loop.sock_connect(sock, ("127.0.0.1", args.port))
        except (OSError, TimeoutError):
            failed += 1
            sock.close()
            return
        connected += 1
        task = asyncio.create_task(hold(sock))
        held.add(task)
        task.add_done_callback(held.discard)

    pending: set[asyncio.Task[None]] = set()
    attempted = 0
    for i in range(args.attempts):
        if time.monotonic() > deadline:
            break
        task = asyncio.create_task(attempt(i))
        attempted += 1
        pending.add(task)
        task.add_done_callback(pending.discard)
        if len(pending) >= 1024:  # at most this many TCP handshakes in flight
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*pending)
    if held:
        await asyncio.gather(*held)
    say(
        done="connect-flood",
        attempted=attempted,
        connected=connected,
        failed=failed,
        closed_by_server=closed_by_server,
        codes=codes,
    )


async def run_healthy(args: argparse.Namespace) -> None:
    policy = pulsewire.Policy(interval=args.interval, timeout=10 * args.interval)
    stop_at = time.monotonic() + getattr(args, "for")

    async def client(index: int) -> None:
        connection = await pulsewire.connect(
            "127.0.0.1", args.port, policy=policy, name=f"healthy-{index}"
        )
        say(connected=index)

        async def watch() -> None:
            with contextlib.suppress(pulsewire.ConnectionClosedError):
                await connection.wait_state(pulsewire.State.SUSPECT)
                say(state="suspect", client=index, at=time.monotonic())
            death = await connection.wait_dead()
            say(state="dead", client=index, reason=death.reason.value, code=death.close_code)

        watching = asyncio.create_task(watch())
        try:
            while time.monotonic() < stop_at and connection.death is None:
                say(rtt=await connection.ping(), client=index)
                await asyncio.sleep(args.interval / 2)
        except pulsewire.ConnectionClosedError:
            pass
        if connection.death is None:
            await connection.close()
        await watching

    await asyncio.gather(*(client(i) for i in range(args.count)))
    say(done="healthy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["flood", "slowloris", "connect-flood", "healthy"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--over", type=float, default=0.0)
    parser.add_argument("--silent", type=int, default=0)
    parser.add_argument("--prefix", type=int, default=1024 * 1024)
    parser.add_argument("--frames", type=int, default=0)
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--for", type=float, default=20.0)
    parser.add_argument("--attempts", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args()
    run = {
        "flood": run_flood,
        "slowloris": run_slowloris,
        "connect-flood": run_connect_flood,
        "healthy": run_healthy,
    }[args.mode]
    asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
