"""What a server holds for all its peers is bounded: connections, buffered bytes, time.

The heavy cases run the server as a subprocess (``target.py``), so that its memory and its
file descriptors are its own: 100 slowloris peers against an inbound budget, and 20,000
connection attempts against a process limited to 4,096 files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile

import pytest
import structlog

import pulsewire
from pulsewire import CloseCode, Limits, ServerLimits, logevents
from pulsewire.core.frames import FrameKind, frame_header
from pulsewire.errors import PolicyError
from pulsewire.testing import decode_control, parse_frames

MIB = 1024 * 1024


@pytest.mark.asyncio
async def test_connections_beyond_the_limit_are_refused_with_a_code_and_one_log_line(accepting):
    limit = 5
    with structlog.testing.capture_logs() as logs:
        async with await pulsewire.serve(
            accepting, server_limits=ServerLimits(max_connections=limit)
        ) as listener:
            kept = [await pulsewire.connect("127.0.0.1", listener.port) for _ in range(limit)]
            refusals = []
            for _ in range(20):
                with pytest.raises(pulsewire.HandshakeError) as refused:
                    await pulsewire.connect("127.0.0.1", listener.port)
                refusals.append(refused.value)
            # The ones kept are served as if nothing happened.
            served = [await accepting.next() for _ in kept]
            assert all(connection.state is pulsewire.State.ALIVE for connection in served)
            await kept[0].close()
            await served[0].wait_dead()  # a slot is free again
            again = await pulsewire.connect("127.0.0.1", listener.port)
            stats = listener.stats()
            await again.close()
    print(f"\nrefused: {refusals[0]}")
    assert {error.code for error in refusals} == {CloseCode.OVERLOADED}
    assert "connection limit (5)" in str(refusals[0])
    assert all(pulsewire.Client.retryable(error) for error in refusals)  # try again later
    assert (stats.refused, stats.max_connections) == (20, limit)
    assert stats.handshake_failures == {}  # a refusal is not a failed handshake
    # One line for twenty refusals (the next says how many it held back).
    refused_lines = [e for e in logs if e["event"] == logevents.SERVER_REFUSED]
    assert len(refused_lines) == 1
    assert refused_lines[0]["limit"] == limit
    assert not [e for e in logs if e["event"] == logevents.HANDSHAKE_FAILED]


async def read_to_the_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes, even if it ends with a reset (a server
    that closes with our bytes unread resets the connection, after what it had sent)."""
    loop = asyncio.get_running_loop()
    received = bytearray()
    with contextlib.suppress(ConnectionResetError):
        async with asyncio.timeout(5):
            while data := await loop.sock_recv(sock, 65536):
                received += data
    return bytes(received)


class Hoarder(pulsewire.Server):
    """Takes its time over each message: until released, the message counts as held."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def on_message(self, connection: pulsewire.Connection, message: bytes) -> None:
        self.arrived.set()
        await self.release.wait()


@pytest.mark.asyncio
async def test_over_the_inbound_budget_the_largest_incomplete_message_is_shed_first():
    limits = Limits(max_message_size=100_000)
    budget = 170_000  # one window (100,016) and one frame (65,542) fit, not much more
    hoarder = Hoarder()
    async with await pulsewire.serve(
        hoarder, limits=limits, server_limits=ServerLimits(inbound_budget=budget)
    ) as listener:
        backlog = await pulsewire.connect("127.0.0.1", listener.port, limits=limits)
        await backlog.send(bytes(90_000))  # whole, and left unconsumed by the application
        async with asyncio.timeout(5):
            await hoarder.arrived.wait()
        # A raw peer starts a message of its own and leaves it incomplete: 80 KB of it. It
        # holds less than the backlog, but an incomplete message is what goes first.
        sock = socket.create_connection(("127.0.0.1", listener.port))
        sock.setblocking(False)
        try:
            start = pulsewire.core.Session(now=0.0, limits=limits).data_to_send()
            chunks = [frame_header(FrameKind.DATA, 0, 16_000) + bytes(16_000)] * 5
            await asyncio.get_running_loop().sock_sendall(sock, bytes(start) + b"".join(chunks))
            answer = await read_to_the_end(sock)
        finally:
            sock.close()
        stats = listener.stats()
        assert stats.inbound_held == 90_016  # the backlog's message, still there
        assert backlog.death is None
        hoarder.release.set()
    frames = parse_frames(answer)
    assert [frame.kind for frame in frames] == [FrameKind.HELLO, FrameKind.CLOSE]
    close = decode_control(frames[-1])
    print(f"\nshed: {close}; peak held {stats.peak_inbound_held} of a {budget} budget")
    assert close.code == CloseCode.OVERLOADED  # type: ignore[union-attr]
    assert stats.shed == 1
    assert stats.peak_inbound_held <= budget + 16_006  # over by one frame at most


def test_a_budget_smaller_than_one_window_is_refused() -> None:
    with pytest.raises(PolicyError, match="inbound_budget"):
        asyncio.run(
            pulsewire.serve(
                lambda connection: asyncio.sleep(0),
                server_limits=ServerLimits(inbound_budget=MIB),
            )
        )


SLOWLORIS = 100
BUDGET = 32 * MIB
FRAME_TIMEOUT = 3.0
MESSAGE_TIMEOUT = 2.0


@pytest.mark.slow
@pytest.mark.asyncio
async def test_100_slowloris_peers_are_closed_in_time_and_memory_stays_within_the_budget(
    start_script,
):
    # Half of them dribble a frame, half a message, after a 1 MiB head start each: 100 MiB
    # offered against a 32 MiB budget. The budget sheds the largest incomplete holders as
    # it fills; the deadlines close the others: a frame within FRAME_TIMEOUT, a message
    # within two windows of MESSAGE_TIMEOUT (the head start buys one).
    with tempfile.TemporaryFile() as log:
        target = await start_script(
            "target.py", "--inbound-budget", str(BUDGET),
            "--frame-timeout", str(FRAME_TIMEOUT), "--message-timeout", str(MESSAGE_TIMEOUT),
            stderr=log,
        )  # fmt: skip
        _, port, _ = (await target.read_line()).split()
        before = await target.ask("stats")
        attack = await start_script(
            "attackers.py", "slowloris", "--port", port, "--count", str(SLOWLORIS),
            "--frames", str(SLOWLORIS // 2), "--prefix", str(MIB), "--every", "1",
            "--for", "20",
        )  # fmt: skip
        await attack.read_until("done", within=40)
        after = await target.ask("stats")
    peers = attack.where("slowloris")
    closed_after = [line["closed"] - line["started"] for line in peers]
    codes: dict[tuple[bool, int], int] = {}
    for line in peers:
        codes[(line["frame"], line["code"])] = codes.get((line["frame"], line["code"]), 0) + 1
    growth = after["peak_rss"] - before["rss"]
    print(
        f"\n{SLOWLORIS} slowloris peers: closed after {min(closed_after):.2f}-"
        f"{max(closed_after):.2f} s; (frame?, code): {codes}; server RSS {before['rss'] / MIB:.1f}"
        f" MiB, peak {after['peak_rss'] / MIB:.1f} MiB (+{growth / MIB:.1f} MiB, budget "
        f"{BUDGET / MIB:.0f} MiB); peak held {after['peak_inbound_held'] / MIB:.2f} MiB; "
        f"shed {after['shed']}, deaths {after['deaths']}"
    )
    assert len(peers) == SLOWLORIS
    assert set(codes) <= {(frame, code) for frame in (True, False) for code in (1009, 1013)}
    assert after["shed"] > 0
    assert after["deaths"].get("protocol_error", 0) > 0  # TOO_SLOW
    assert after["active"] == 0
    for line in peers:
        bound = FRAME_TIMEOUT if line["frame"] else 2 * MESSAGE_TIMEOUT
        assert line["closed"] - line["started"] <= bound + 1.0
    assert after["peak_inbound_held"] <= BUDGET + 64 * 1024  # over by one read at most
    assert growth <= BUDGET + 8 * MIB  # the budget, and each connection's own state


@pytest.mark.slow
@pytest.mark.asyncio
async def test_20000_connection_attempts_at_4096_files_cost_heartbeats_and_logs_nothing(
    start_script,
):
    # No connection limit of its own (max_connections above the file limit): the server
    # runs out of file descriptors, and its accept loop must back off quietly.
    with tempfile.TemporaryFile() as log:
        target = await start_script(
            "target.py", "--nofile", "4096", "--max-connections", "100000",
            "--handshake-timeout", "5", stderr=log,
        )  # fmt: skip
        _, port, _ = (await target.read_line()).split()
        healthy = await start_script(
            "attackers.py", "healthy", "--port", port, "--count", "2",
            "--interval", "0.2", "--for", "20",
        )  # fmt: skip
        await healthy.read_until("connected", 2, within=20)
        flood = await start_script(
            "attackers.py", "connect-flood", "--port", port, "--attempts", "20000",
            "--for", "14",
        )  # fmt: skip
        await flood.read_until("done", within=40)
        stats = await target.ask("stats")
        await healthy.read_until("done", within=30)
        log_bytes = os.fstat(log.fileno()).st_size
        log.seek(0)
        text = log.read().decode(errors="replace")
    (done,) = flood.where("done")
    rtts = [line["rtt"] for line in healthy.where("rtt")]
    print(
        f"\n{done['attempted']} connection attempts ({done['connected']} connected, "
        f"{done['failed']} gave up, {done['closed_by_server']} closed by the server: "
        f"{done['codes']}); server: {stats['accept_failures']} failed accepts, "
        f"{stats['handshake_failures']} failed handshakes; log {log_bytes} bytes; healthy "
        f"clients: {len(rtts)} pings answered, max RTT {max(rtts) * 1000:.1f} ms"
    )
    assert done["attempted"] == 20_000
    assert stats["accept_failures"] > 0  # it really ran out of file descriptors
    assert log_bytes < MIB
    assert "Traceback" not in text
    assert text.count(logevents.SERVER_ACCEPT_FAILED) <= 3  # one line per 10 s
    # The established clients kept their heartbeats all along, and ended in order.
    assert [line["state"] for line in healthy.where("state")] == ["dead", "dead"]
    assert {line["reason"] for line in healthy.where("state")} == {"local_close"}
    assert len(rtts) >= 2 * 20 / 0.2 * 0.5  # half the pings they would send unhindered
