"""What heartbeats cost on real sockets: none on busy links, one exchange per interval on
idle ones, and control frames that overtake bulk data instead of queueing behind it."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket

import pytest

import pulsewire
from pulsewire import Limits, Policy

DURATION = 2.0
PERIOD = 0.05
KERNEL_BUFFER = 256 * 1024


async def echo(connection: pulsewire.Connection) -> None:
    async for message in connection:
        await connection.send(message)


@pytest.mark.asyncio
async def test_busy_connection_sends_no_pings_and_idle_ones_one_exchange_per_interval():
    # The busy pair runs without jitter, so a ping is due only after a full 0.2 s without
    # a message, four message periods: a scheduling hiccup of ~0.15 s cannot fake one.
    busy_policy = Policy(interval=0.2, timeout=2.0, jitter=0.0)
    idle_policy = Policy(interval=0.2, timeout=2.0)  # default jitter, as deployed
    served: dict[str, pulsewire.Connection] = {}
    both_served = asyncio.Event()

    async def handler(connection: pulsewire.Connection) -> None:
        served[connection.peer_name] = connection
        if len(served) == 2:
            both_served.set()
        await echo(connection)

    async with (
        await pulsewire.serve(handler, policy=busy_policy) as busy_server,
        await pulsewire.serve(handler, policy=idle_policy) as idle_server,
    ):
        busy = await pulsewire.connect(
            "127.0.0.1", busy_server.port, policy=busy_policy, name="busy"
        )
        idle = await pulsewire.connect(
            "127.0.0.1", idle_server.port, policy=idle_policy, name="idle"
        )
        async with asyncio.timeout(5):
            await both_served.wait()  # the handlers run right after the handshake
        loop = asyncio.get_running_loop()
        idle_before = idle.stats().pings_sent + served["idle"].stats().pings_sent

        start = loop.time()
        exchanged = 0
        async with asyncio.timeout(DURATION + 5):
            while (now := loop.time()) < start + DURATION:
                await busy.send(b"tick")
                assert await busy.recv() == b"tick"
                exchanged += 1
                await asyncio.sleep(max(0.0, start + exchanged * PERIOD - now))
        elapsed = loop.time() - start

        busy_client, busy_server_side = busy.stats(), served["busy"].stats()
        idle_client, idle_server_side = idle.stats(), served["idle"].stats()
        idle_pings = idle_client.pings_sent + idle_server_side.pings_sent - idle_before
        expected = elapsed / idle_policy.interval
        print(
            f"\nbusy ({exchanged} round trips in {elapsed:.2f} s): pings sent "
            f"client {busy_client.pings_sent}, server {busy_server_side.pings_sent}"
            f"\nidle: pings sent client {idle_client.pings_sent}, server "
            f"{idle_server_side.pings_sent}; {idle_pings} in {elapsed:.2f} s "
            f"({expected:.0f} intervals)"
        )
        assert exchanged >= DURATION / PERIOD * 0.8
        assert busy_client.messages_received == exchanged
        assert busy_client.pings_sent == 0
        assert busy_server_side.pings_sent == 0
        # The control pair did ping: the busy pair's silence is the suppression at work.
        assert idle_client.pings_sent + idle_server_side.pings_sent > 0
        assert idle_client.pongs_received + idle_server_side.pongs_received > 0
        # Idle suppression applies to pings too: a PING from one side is evidence for the
        # other, so the pair shares about one exchange per interval (jitter makes it a
        # little more, ~1.2x), not one per side (2x). Generous bounds, both ways.
        assert 0.5 * expected <= idle_pings <= 1.6 * expected
        await busy.close()
        await idle.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "sink",
    [
        # The asyncio driver on both ends, default kernel buffers: the numbers as deployed.
        # Here the PING's wait is mostly the DATA already in the kernel's buffers (loopback
        # autotunes them to several MiB), which no user-space scheduling can overtake.
        pytest.param(("server", "--sink"), id="driver-sink"),
        # A sink that reads at 20 MB/s behind small kernel buffers: the transfer takes
        # ~2.5 s, so a PING queued behind the message in user space would wait seconds and
        # fail the bound; interleaved, it waits only for the ~1 MiB in the kernel and the
        # driver's one write budget.
        pytest.param(
            ("slow-sink", "--read-rate", "20e6", "--rcvbuf", str(KERNEL_BUFFER)),
            id="throttled-sink",
        ),
    ],
)
async def test_pongs_overtake_a_50_mb_message(spawn_peer, sink):
    size = 50 * 1024 * 1024
    limits = Limits(max_message_size=64 * 1024 * 1024)
    # Ping often (the sink accepts it) so that even a fast transfer sees several pings.
    policy = Policy(interval=0.02, timeout=5.0)
    payload = random.Random(7).randbytes(size)
    digest = hashlib.sha256(payload).hexdigest()
    peer = await spawn_peer(
        *sink,
        "--max-message-size", str(limits.max_message_size),
        "--min-peer-interval", str(policy.interval / 2),
    )  # fmt: skip
    connection = await pulsewire.connect(
        "127.0.0.1", int(peer.ready[0]), policy=policy, limits=limits
    )
    if "--rcvbuf" in sink:
        connection.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_BUFFER
        )
    loop = asyncio.get_running_loop()

    before = connection.stats()
    start = loop.time()
    async with asyncio.timeout(60):
        await connection.send(payload)
        length, received_digest = await peer.expect("RECEIVED")
    transfer = loop.time() - start
    during = connection.stats()
    pings = during.pings_sent - before.pings_sent
    # Close in order: the sink answers every PING sent so far before it echoes our CLOSE,
    # so once the close completes every PONG of the transfer is in (and in rtt_max).
    async with asyncio.timeout(10):
        death = await connection.close()
    after = connection.stats()

    print(
        f"\n{sink[0]}: 50 MiB in {transfer:.2f} s ({size / transfer / 2**20:.0f} MiB/s); "
        f"{pings} pings during the transfer, PONG RTT max {after.rtt_max * 1000:.1f} ms, "
        f"p50 {after.rtt_p50 * 1000:.1f} ms, min {after.rtt_min * 1000:.1f} ms"
    )
    assert int(length) == size
    assert received_digest == digest
    assert pings >= 2  # a transfer that gave no ping a chance would prove nothing
    assert death.clean  # no false verdict along the way
    assert after.pongs_received >= during.pings_sent
    assert after.rtt_max < 1.0


@pytest.mark.asyncio
async def test_a_slow_but_healthy_reader_of_a_one_way_stream_is_not_convicted(spawn_peer):
    # The reader takes 6 MiB at 2 MB/s: about 3 s, three times our timeout. Our PINGs wait behind
    # megabytes already in the kernel buffers and their PONGs come too late; the reader,
    # which sends nothing else, pings us on the idle reverse path, and that is our evidence.
    size = 6 * 1024 * 1024
    policy = Policy(interval=0.2, timeout=1.0)
    payload = random.Random(11).randbytes(size)
    peer = await spawn_peer(
        "slow-sink",
        "--read-rate", "2e6",
        "--interval", str(policy.interval),
        "--timeout", "5.0",
        "--min-peer-interval", "0.05",
        "--max-message-size", str(size),
    )  # fmt: skip
    connection = await pulsewire.connect(
        "127.0.0.1",
        int(peer.ready[0]),
        policy=policy,
        limits=Limits(max_message_size=size),
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(30):
        await connection.send(payload)
        length, received_digest = await peer.expect("RECEIVED")
    took = loop.time() - start
    stats = connection.stats()
    print(
        f"\nslow reader: {size / 2**20:.0f} MiB in {took:.2f} s, "
        f"{stats.pings_received} pings from the reader, state {connection.state.value}"
    )
    assert took > 1.5 * policy.timeout  # slow enough to matter
    assert int(length) == size
    assert received_digest == hashlib.sha256(payload).hexdigest()
    assert connection.death is None
    assert stats.pings_received >= 1
    await connection.close()
