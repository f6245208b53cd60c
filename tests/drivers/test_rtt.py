"""RTT on both ends of a real connection, and pings on demand."""

from __future__ import annotations

import asyncio

import pytest

import pulsewire

FAST = pulsewire.Policy(interval=0.1, timeout=1.0)


@pytest.mark.asyncio
async def test_the_connecting_side_knows_its_rtt_from_the_handshake(accepting) -> None:
    async with await pulsewire.serve(accepting, policy=FAST) as listener:
        connection = await pulsewire.connect("127.0.0.1", listener.port, policy=FAST)
        assert connection.rtt is not None
        assert 0 <= connection.rtt < 0.5
        await connection.close()


@pytest.mark.asyncio
async def test_the_accepting_side_learns_its_rtt_from_the_clients_pings(accepting) -> None:
    async with await pulsewire.serve(accepting, policy=FAST) as listener:
        connection = await pulsewire.connect("127.0.0.1", listener.port, policy=FAST)
        served = await accepting.next()
        # The client leads: the server never pings, yet has RTT samples after two PINGs.
        async with asyncio.timeout(5):
            while served.stats().pings_received < 3:  # noqa: ASYNC110 -- no event per ping
                await asyncio.sleep(FAST.interval / 2)
        stats = served.stats()
        assert stats.pings_sent == 0
        assert served.rtt is not None
        assert 0 <= served.rtt < 0.5
        await connection.close()


@pytest.mark.asyncio
async def test_ping_on_demand_returns_a_round_trip_from_either_side(accepting) -> None:
    slow = pulsewire.Policy(interval=2.0, timeout=8.0)  # no scheduled ping in this test
    async with await pulsewire.serve(accepting, policy=slow) as listener:
        connection = await pulsewire.connect("127.0.0.1", listener.port, policy=slow)
        served = await accepting.next()
        for side in (connection, served):
            rtt = await side.ping()
            assert 0 <= rtt < 0.5
        # Pings asked for back to back are spaced as the peer's abuse limit wants.
        loop = asyncio.get_running_loop()
        started = loop.time()
        await connection.ping()
        elapsed = loop.time() - started
        assert elapsed >= slow.interval * 0.5 - 0.05
        assert connection.death is None
        await connection.close()


@pytest.mark.asyncio
async def test_a_ping_on_a_connection_that_dies_raises_the_death(accepting) -> None:
    async with await pulsewire.serve(accepting, policy=FAST) as listener:
        connection = await pulsewire.connect("127.0.0.1", listener.port, policy=FAST)
        served = await accepting.next()
        served.abort()
        await connection.wait_dead()
        with pytest.raises(pulsewire.PeerDeadError):
            await connection.ping()


@pytest.mark.asyncio
async def test_a_ping_before_the_handshake_says_so_instead_of_waiting(accepting) -> None:
    # A server's Connection exists from the moment TCP connects: a peer that never sends
    # its HELLO leaves it handshaking, and ping() must not wait for an allowance that
    # only the handshake can set.
    async with await pulsewire.serve(accepting) as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        try:
            async with asyncio.timeout(5):
                await reader.readexactly(5)  # its preamble: the server's side is connected
            (connection,) = listener.connections
            with pytest.raises(pulsewire.UsageError, match="before the handshake"):
                async with asyncio.timeout(5):
                    await connection.ping()
        finally:
            writer.close()
