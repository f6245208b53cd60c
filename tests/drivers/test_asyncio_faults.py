"""Real faults injected into real peer processes, and how (and how fast) each is detected.

Every test prints its measured numbers; run with ``pytest -s`` to see them. Margins are
honest for a shared, noisy machine: a verdict may come a little *late* (scheduling), never
meaningfully *early* (that would be a false conviction).
"""

from __future__ import annotations

import asyncio
import socket

import pytest

import pulsewire
from pulsewire import Limits, Policy, Reason, Source
from pulsewire.asyncio.connection import SEND_BUFFER_LIMIT

#: A verdict may be this much late on a loaded machine (timer and scheduling delays).
LATE = 0.5
#: ... and this much early only through clock granularity and the core's EPSILON.
EARLY = 0.05
#: "Promptly" for kernel-reported deaths (FIN, RST), which need no timer at all.
PROMPT = 0.5


def keepalive_socket(idle: int, interval: int, count: int) -> socket.socket:
    """A non-blocking TCP socket with kernel keepalive tuned as tight as it goes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
    return sock


def assert_still_open(sock: socket.socket) -> None:
    """No EOF, no RST, no ETIMEDOUT: a non-blocking read finds nothing, and no error."""
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    try:
        data = sock.recv(1)  # b"" would be EOF; ECONNRESET/ETIMEDOUT would raise otherwise
    except BlockingIOError:
        return
    pytest.fail(f"the plain socket is not open and idle: recv returned {data!r}")


@pytest.mark.asyncio
async def test_frozen_peer_dies_of_timeout_while_kernel_keepalive_sees_it_alive(spawn_peer):
    peer = await spawn_peer("server", "--plain", "--interval", "0.2", "--timeout", "5")
    port, plain_port = (int(field) for field in peer.ready)
    policy = Policy(interval=0.2, timeout=1.0)
    connection = await pulsewire.connect("127.0.0.1", port, policy=policy)
    loop = asyncio.get_running_loop()
    # Kernel keepalive as tight as Linux allows: a dead host is noticed within
    # idle + interval * count = 2 s of the last traffic.
    plain = keepalive_socket(idle=1, interval=1, count=1)
    try:
        async with asyncio.timeout(5):
            await loop.sock_connect(plain, ("127.0.0.1", plain_port))
            await connection.send(b"are you there")
            assert await connection.recv() == b"are you there"
        assert plain.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 1
        assert_still_open(plain)

        peer.freeze()
        frozen_at = loop.time()
        last_evidence = frozen_at - connection.stats().silence
        async with asyncio.timeout(policy.timeout + 5):
            death = await connection.wait_dead()
        dead_at = loop.time()
        # At the verdict the frozen process's kernel still holds the plain connection open.
        assert_still_open(plain)

        detected = dead_at - last_evidence
        print(
            f"\nfrozen peer: DEAD({death.reason.value}, {death.source.value}) "
            f"{detected:.3f} s after the last evidence, {dead_at - frozen_at:.3f} s after "
            f"SIGSTOP (timeout {policy.timeout} s); kernel keepalive: still open"
        )
        assert death.reason is Reason.TIMEOUT
        assert death.source is Source.HEARTBEAT
        assert policy.timeout - EARLY <= detected <= policy.timeout + LATE
        assert policy.timeout - EARLY <= death.silence <= policy.timeout + LATE

        # Not just "not yet": stay frozen past keepalive's own worst case (2 s after the
        # last traffic, which was before the freeze). Waiting is the point here, there is
        # no event to wait for: the kernel answers every probe for the stopped process,
        # so keepalive never convicts it.
        await asyncio.sleep(max(0.0, frozen_at + 2.5 - loop.time()))
        assert_still_open(plain)
        print(f"kernel keepalive (1 s/1 s/1): still open {loop.time() - frozen_at:.1f} s in")
    finally:
        plain.close()
        peer.thaw()


@pytest.mark.asyncio
async def test_killed_peer_dies_of_eof_promptly(spawn_peer):
    # Long interval and timeout: no ping is in flight when the peer dies (unread bytes in
    # its socket would make its kernel answer with RST, not FIN), and a TIMEOUT verdict
    # could not come before 10 s.
    flags = ("--interval", "4", "--timeout", "10")
    peer = await spawn_peer("server", *flags)
    policy = Policy(interval=4.0, timeout=10.0)
    connection = await pulsewire.connect("127.0.0.1", int(peer.ready[0]), policy=policy)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        await connection.send(b"hello")
        assert await connection.recv() == b"hello"

    peer.kill()
    killed_at = loop.time()
    async with asyncio.timeout(policy.timeout + 5):
        death = await connection.wait_dead()
    detected = loop.time() - killed_at
    print(f"\nSIGKILL: DEAD({death.reason.value}, {death.source.value}) after {detected:.3f} s")
    assert death.reason is Reason.EOF
    assert death.source is Source.KERNEL
    assert death.close_code is None  # the process never said goodbye: the kernel did
    assert detected < PROMPT


@pytest.mark.asyncio
async def test_peer_aborting_with_rst_dies_of_reset_promptly(spawn_peer, accepting):
    policy = Policy(interval=4.0, timeout=10.0)
    async with await pulsewire.serve(accepting, policy=policy) as listener:
        peer = await spawn_peer(
            "raw-rst", "--port", str(listener.port), "--interval", "4", "--timeout", "10"
        )
        connection = await accepting.next()
        loop = asyncio.get_running_loop()

        await peer.write_line("reset")
        asked_at = loop.time()
        async with asyncio.timeout(5):
            assert await peer.readline() == "RST"
        async with asyncio.timeout(policy.timeout + 5):
            death = await connection.wait_dead()
        detected = loop.time() - asked_at
        print(f"\nRST: DEAD({death.reason.value}, {death.source.value}) after {detected:.3f} s")
        assert death.reason is Reason.RESET
        assert death.source is Source.KERNEL
        assert isinstance(death.error, ConnectionResetError)
        assert detected < PROMPT
        assert listener.stats().deaths == {"reset": 1}


@pytest.mark.asyncio
async def test_peer_that_stops_reading_dies_of_timeout_and_unblocks_send(spawn_peer, accepting):
    # Without TCP_USER_TIMEOUT (on by default, = timeout): the reader's kernel would also
    # give up on its zero window ~0.3 s after our heartbeat does, and would convict the peer
    # (TIMEOUT, KERNEL) even if the heartbeat were broken. This test is about the heartbeat.
    policy = Policy(interval=0.2, timeout=1.0)
    no_user_timeout = pulsewire.SocketOptions(user_timeout=False)
    limits = Limits(max_message_size=64 * 1024 * 1024)
    payload = bytes(50 * 1024 * 1024)
    async with await pulsewire.serve(
        accepting, policy=policy, limits=limits, socket_options=no_user_timeout
    ) as listener:
        await spawn_peer(
            "silent-reader",
            "--port", str(listener.port),
            "--max-message-size", str(limits.max_message_size),
        )  # fmt: skip
        connection = await accepting.next()
        loop = asyncio.get_running_loop()
        last_evidence = loop.time() - connection.stats().silence  # its HELLO, its last word

        sending = asyncio.create_task(connection.send(payload))
        async with asyncio.timeout(policy.timeout + 5):
            death = await connection.wait_dead()
        dead_at = loop.time()
        async with asyncio.timeout(5):
            # send() was still waiting for the queue to drain when the verdict fell.
            with pytest.raises(pulsewire.PeerDeadError) as raised:
                await sending
        stats = connection.stats()

        detected = dead_at - last_evidence
        print(
            f"\nsilent reader: DEAD({death.reason.value}, {death.source.value}) "
            f"{detected:.3f} s after its last frame (timeout {policy.timeout} s); "
            f"{stats.bytes_out / 2**20:.1f} MiB of {len(payload) / 2**20:.0f} MiB written, "
            f"{stats.pings_sent} pings unanswered"
        )
        assert raised.value.reason is Reason.TIMEOUT
        assert raised.value.death is death
        assert death.reason is Reason.TIMEOUT
        assert death.source is Source.HEARTBEAT
        assert policy.timeout - EARLY <= detected <= policy.timeout + LATE
        # The buffers really filled: most of the message never left user space, and the
        # death hands it back, whole (a message is delivered whole or not at all).
        assert stats.bytes_out < len(payload) - SEND_BUFFER_LIMIT
        assert death.unsent == (payload,)
        assert (death.messages_sent, death.delivered) == (1, 0)
        assert stats.pings_sent >= 1
        assert stats.pongs_received == 0
