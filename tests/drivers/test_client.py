"""The reconnecting Client: backoff, reconnection after deaths, TOO_MANY_PINGS back-off."""

from __future__ import annotations

import asyncio
import socket

import pytest
import structlog

import pulsewire
from pulsewire import logevents

FAST = pulsewire.Backoff(initial=0.02, maximum=0.1)


@pytest.mark.asyncio
async def test_the_client_reconnects_after_each_death_and_counts_them() -> None:
    async def rude(connection: pulsewire.Connection) -> None:
        connection.abort()  # every connection is dropped at once: the client sees RESET/EOF

    async with (
        await pulsewire.serve(rude) as listener,
        pulsewire.Client("127.0.0.1", listener.port, backoff=FAST) as client,
    ):
        seen: list[pulsewire.Connection] = []
        async with asyncio.timeout(10):
            async for connection in client:
                seen.append(connection)
                await connection.wait_dead()
                if len(seen) == 3:
                    break
        assert len(set(map(id, seen))) == 3
        stats = client.stats()
        assert stats.connects >= 3
        assert sum(stats.deaths.values()) >= 2


@pytest.mark.asyncio
async def test_the_client_retries_until_the_server_appears() -> None:
    with socket.socket() as probe:  # a port with nothing listening (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def echo(connection: pulsewire.Connection) -> None:
        async for message in connection:
            await connection.send(message)

    with structlog.testing.capture_logs() as logs:
        async with pulsewire.Client("127.0.0.1", port, backoff=FAST) as client:
            # No event marks a failed attempt yet: wait for the condition itself, bounded.
            async with asyncio.timeout(10):
                while client.stats().failed_attempts < 2:  # noqa: ASYNC110
                    await asyncio.sleep(FAST.initial / 4)
            async with await pulsewire.serve(echo, "127.0.0.1", port):
                async with asyncio.timeout(10):
                    connection = await client.connection()
                await connection.send(b"ping")
                assert await connection.recv() == b"ping"
                assert client.stats().failed_attempts >= 2
    failures = [e for e in logs if e["event"] == logevents.CLIENT_CONNECT_FAILED]
    assert failures
    assert all(0 <= e["retry_in"] <= FAST.maximum for e in failures)


@pytest.mark.asyncio
async def test_told_too_many_pings_the_client_doubles_its_interval_loudly() -> None:
    class Strict(pulsewire.Server):
        """Refuses the first two connections for pinging too often, then accepts."""

        def __init__(self) -> None:
            self.refused = 0
            self.accepted = asyncio.Event()

        async def on_connect(self, connection: pulsewire.Connection) -> None:
            if self.refused < 2:
                self.refused += 1
                await connection.close(pulsewire.CloseCode.TOO_MANY_PINGS, "slow down")
            else:
                self.accepted.set()

    server = Strict()
    policy = pulsewire.Policy(interval=0.5, timeout=3.0)
    with structlog.testing.capture_logs() as logs:
        async with (
            await pulsewire.serve(server) as listener,
            pulsewire.Client("127.0.0.1", listener.port, policy=policy, backoff=FAST) as client,
        ):
            async with asyncio.timeout(10):
                await server.accepted.wait()
            connection = await client.connection()
            assert connection.negotiated is not None
            assert connection.negotiated.ping_interval == 2.0
    assert client.policy.interval == 2.0
    assert client.policy.timeout == 3.0
    backoffs = [e for e in logs if e["event"] == logevents.CLIENT_PING_BACKOFF]
    assert [e["new_interval"] for e in backoffs[:2]] == [1.0, 2.0]
    assert all(e["log_level"] == "error" for e in backoffs)


@pytest.mark.asyncio
async def test_a_client_that_is_not_running_says_so() -> None:
    client = pulsewire.Client("127.0.0.1", 1)
    with pytest.raises(pulsewire.UsageError, match="not running"):
        await client.connection()
