"""One conformance suite for both drivers: the same faults, the same verdicts and reasons.

Each scenario runs for every (driver, backend, transport) of ``conftest.py``: a real
peer process is frozen (SIGSTOP), killed (SIGKILL), resets its connection, keeps it busy,
stops reading, or refuses the handshake, and the side under test must reach the same
verdict with the same reason everywhere. Policies are short (0.2 s interval, 1 s
timeout) so the whole matrix stays quick. Margins are honest for a shared, noisy
machine: a verdict may come a little late (scheduling), never early (a false conviction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

import pulsewire
from pulsewire import CloseCode, Limits, Policy, Reason, SocketOptions, Source

if TYPE_CHECKING:
    from conftest import Adapter

pytestmark = pytest.mark.anyio

#: The scenarios' policy: quick to convict, so the matrix stays quick.
POLICY = Policy(interval=0.2, timeout=1.0)
PEER_POLICY = ("--interval", "0.2", "--timeout", "5")  #: the peer never convicts us first
#: Kernel-reported deaths: a long heartbeat, so no PING is in flight to turn a FIN into an
#: RST, and no TIMEOUT verdict could come first.
SLOW = Policy(interval=4.0, timeout=10.0)
SLOW_PEER = ("--interval", "4", "--timeout", "10")
#: A frozen peer is convicted at most this long after its timeout (the promise).
LATE = 0.2
#: ... and no sooner than its timeout, but for clock granularity.
EARLY = 0.05
#: "Promptly" for kernel-reported deaths (FIN, RST), which need no timer at all.
PROMPT = 0.5


async def test_frozen_peer_dies_of_timeout(adapter: Adapter, spawn) -> None:
    peer = await spawn("server", *PEER_POLICY, *adapter.peer_flags)
    async with adapter.connect(adapter.peer_target(peer.ready), policy=POLICY) as connection:
        with anyio.fail_after(5):
            await connection.send(b"are you there")
            assert await connection.recv() == b"are you there"
        peer.freeze()
        last_evidence = anyio.current_time() - connection.stats().silence
        with anyio.fail_after(POLICY.timeout + 5):
            death = await connection.wait_dead()
        detected = anyio.current_time() - last_evidence
    print(f"\nfrozen: {death.reason.value} ({death.source.value}) after {detected:.3f} s")
    assert (death.reason, death.source) == (Reason.TIMEOUT, Source.HEARTBEAT)
    assert POLICY.timeout - EARLY <= death.silence <= POLICY.timeout + LATE
    assert POLICY.timeout - EARLY <= detected <= POLICY.timeout + LATE


async def test_killed_peer_dies_of_eof_promptly(adapter: Adapter, spawn) -> None:
    peer = await spawn("server", *SLOW_PEER, *adapter.peer_flags)
    async with adapter.connect(adapter.peer_target(peer.ready), policy=SLOW) as connection:
        with anyio.fail_after(5):
            await connection.send(b"hello")
            assert await connection.recv() == b"hello"
        peer.kill()
        killed_at = anyio.current_time()
        with anyio.fail_after(SLOW.timeout + 5):
            death = await connection.wait_dead()
        detected = anyio.current_time() - killed_at
    print(f"\nSIGKILL: {death.reason.value} ({death.source.value}) after {detected:.3f} s")
    assert (death.reason, death.source) == (Reason.EOF, Source.KERNEL)
    assert death.close_code is None  # the process never said goodbye: its kernel did
    assert detected < PROMPT


async def test_peer_reset_dies_of_reset_promptly(adapter: Adapter, spawn) -> None:
    async with adapter.listen(policy=SLOW) as listening:
        peer = await spawn("raw-rst", "--unread", *listening.peer_flags, *SLOW_PEER)
        connection = await listening.next()
        # Bytes the peer never reads (it waits for them): over a Unix socket, closing with
        # unread data is what resets the other end (TCP's SO_LINGER 0 sends an RST anyway).
        await connection.send(b"unread")
        await peer.write_line("reset")
        asked_at = anyio.current_time()
        assert await peer.readline() == "RST"
        with anyio.fail_after(SLOW.timeout + 5):
            death = await connection.wait_dead()
        detected = anyio.current_time() - asked_at
        stats = listening.stats()
    print(f"\nRST: {death.reason.value} ({death.source.value}) after {detected:.3f} s")
    assert (death.reason, death.source) == (Reason.RESET, Source.KERNEL)
    # The peer's kernel reset the connection: seen on a read (ECONNRESET) or on a write
    # (EPIPE, a Unix socket whose peer closed with unread data).
    assert isinstance(death.error, ConnectionResetError | BrokenPipeError)
    assert detected < PROMPT
    assert stats.deaths == {"reset": 1}


async def test_close_returns_when_every_message_was_delivered(adapter: Adapter, spawn) -> None:
    peer = await spawn("server", *PEER_POLICY, *adapter.peer_flags)
    async with adapter.connect(adapter.peer_target(peer.ready), policy=POLICY) as connection:
        with anyio.fail_after(5):
            for index in range(20):
                await connection.send(b"m%d" % index)
            for index in range(20):
                assert await connection.recv() == b"m%d" % index
            death = await connection.close()
    assert death.reason is Reason.LOCAL_CLOSE
    assert not death.undelivered
    assert death.delivered == death.messages_sent == 20


async def test_close_that_cannot_deliver_raises_with_what_it_did_not(
    adapter: Adapter, spawn
) -> None:
    peer = await spawn("server", *PEER_POLICY, *adapter.peer_flags)
    policy = Policy(interval=0.2, timeout=5.0, close_timeout=0.5)
    async with adapter.connect(adapter.peer_target(peer.ready), policy=policy) as connection:
        with anyio.fail_after(5):
            await connection.send(b"first")
            assert await connection.recv() == b"first"
        peer.freeze()  # its kernel still takes our bytes; its application never will
        for index in range(10):
            await connection.send(b"m%d" % index)
        with pytest.raises(pulsewire.LocalClosedError) as raised:
            with anyio.fail_after(policy.close_timeout + 5):
                await connection.close()
    death = raised.value.death
    assert death.reason is Reason.LOCAL_CLOSE
    assert death.undelivered
    assert death.messages_sent == 11
    # Every message is in exactly one of the three; none of the ten can be delivered.
    assert death.delivered + len(death.in_doubt) + len(death.unsent) == 11
    assert death.delivered <= 1


async def test_busy_connection_sends_no_pings(adapter: Adapter, spawn) -> None:
    # No jitter on either side: a ping is due only after a full interval (0.2 s) without a
    # message, four message periods, so a scheduling hiccup of ~0.15 s cannot fake one.
    flags = ("--interval", "0.2", "--timeout", "1", "--jitter", "0")
    peer = await spawn("server", *flags, *adapter.peer_flags)
    policy = Policy(interval=0.2, timeout=1.0, jitter=0.0)
    period = 0.05
    async with adapter.connect(adapter.peer_target(peer.ready), policy=policy) as connection:
        before = connection.stats()
        start = anyio.current_time()
        exchanged = 0
        with anyio.fail_after(10):
            # Both directions busy for five intervals: a message each way every 50 ms.
            while (now := anyio.current_time()) < start + 5 * policy.interval:
                await connection.send(b"busy %d" % exchanged)
                assert await connection.recv() == b"busy %d" % exchanged
                exchanged += 1
                await anyio.sleep(max(0.0, start + exchanged * period - now))
        after = connection.stats()
    assert exchanged >= 10
    assert after.pings_sent == before.pings_sent
    assert after.pings_received == before.pings_received
    assert connection.death is not None
    assert connection.death.reason is Reason.LOCAL_CLOSE


async def test_peer_that_stops_reading_dies_of_timeout_and_unblocks_send(
    adapter: Adapter, spawn
) -> None:
    # Without TCP_USER_TIMEOUT (on by default, = timeout) the reader's kernel would also
    # give up on its zero window soon after the heartbeat: this is about the heartbeat.
    limits = Limits(max_message_size=64 * 1024 * 1024)
    payload = bytes(50 * 1024 * 1024)
    async with adapter.listen(
        policy=POLICY, limits=limits, socket_options=SocketOptions(user_timeout=False)
    ) as listening:
        await spawn(
            "silent-reader",
            *listening.peer_flags,
            "--max-message-size", str(limits.max_message_size),
        )  # fmt: skip
        connection = await listening.next()
        last_evidence = anyio.current_time() - connection.stats().silence  # its HELLO
        raised: list[BaseException] = []

        async def send() -> None:
            try:
                await connection.send(payload)
            except pulsewire.PeerDeadError as error:
                raised.append(error)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(send)
            with anyio.fail_after(POLICY.timeout + 5):
                death = await connection.wait_dead()
            detected = anyio.current_time() - last_evidence
        stats = connection.stats()
    print(
        f"\nsilent reader: {death.reason.value} ({death.source.value}) {detected:.3f} s after"
        f" its last frame; {stats.bytes_out / 2**20:.1f} MiB of 50 MiB written"
    )
    assert (death.reason, death.source) == (Reason.TIMEOUT, Source.HEARTBEAT)
    assert POLICY.timeout - EARLY <= detected <= POLICY.timeout + 0.5
    # send() was still waiting for the queue to drain when the verdict fell, and raised.
    assert len(raised) == 1
    assert raised[0].death is death
    assert stats.bytes_out < len(payload) - 1024 * 1024  # the buffers really filled
    assert stats.pings_sent >= 1
    assert stats.pongs_received == 0


async def test_client_refused_by_the_peer_gets_a_handshake_error(adapter: Adapter, spawn) -> None:
    peer = await spawn("server", "--interval", "0.2", "--timeout", "1", *adapter.peer_flags)
    # We accept the peer's pings only every 2 s: it cannot meet its own 1 s timeout.
    policy = Policy(interval=0.2, timeout=3.0, min_peer_interval=2.0)
    with pytest.raises(pulsewire.HandshakeError) as raised:
        async with adapter.connect(adapter.peer_target(peer.ready), policy=policy):
            pass
    assert raised.value.code == CloseCode.POLICY_MISMATCH
    assert "1004" in str(raised.value)


async def test_server_refuses_a_peer_it_cannot_watch_in_time(adapter: Adapter, spawn) -> None:
    async with adapter.listen(policy=POLICY) as listening:
        # The peer accepts our pings only every 2 s: we could not convict it within 1 s.
        peer = await spawn(
            "client", *listening.peer_flags,
            "--interval", "0.2", "--timeout", "3", "--min-peer-interval", "2",
            ready="REFUSED",
        )  # fmt: skip
        assert peer.ready == [str(int(CloseCode.POLICY_MISMATCH))]
        # Our side recorded the failure in the same step that wrote the CLOSE the peer read.
        stats = listening.stats()
        assert (stats.handshake_failures, stats.deaths) == ({"protocol_error": 1}, {})
