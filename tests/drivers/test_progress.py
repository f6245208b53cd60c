"""Progress reports: a peer whose loop answers but whose application is stuck is told apart."""

from __future__ import annotations

import asyncio
import logging

import pytest
import structlog

import pulsewire
from pulsewire import logevents


class SlowHandler(pulsewire.Server):
    """Its application sits on a message until released; its loop keeps answering PINGs."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def on_message(self, connection: pulsewire.Connection, message: bytes) -> None:
        await self.release.wait()
        await connection.send(b"done")


@pytest.mark.asyncio
async def test_a_stuck_application_makes_its_peer_suspect_with_that_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pulsewire")  # peer.recovered is an INFO event
    server = SlowHandler()
    server_policy = pulsewire.Policy(progress_timeout=0.3)
    client_policy = pulsewire.Policy(interval=0.1, timeout=5.0)
    with structlog.testing.capture_logs() as logs:
        async with await pulsewire.serve(server, policy=server_policy) as listener:
            client = await pulsewire.connect("127.0.0.1", listener.port, policy=client_policy)
            await client.send(b"work")
            async with asyncio.timeout(5):
                await client.wait_state(pulsewire.State.SUSPECT)
            stuck = client.stats().peer_stuck_for
            server.release.set()
            async with asyncio.timeout(5):
                assert await client.recv() == b"done"
                await client.wait_state(pulsewire.State.ALIVE)
            assert client.stats().peer_stuck_for == 0.0
            await client.close()
    print(f"\npeer reported its application stuck for {stuck:.2f} s")
    assert stuck > 0.3
    suspects = [e for e in logs if e["event"] == logevents.PEER_SUSPECT]
    assert suspects[0]["cause"] == "peer_stuck"
    assert any(e["event"] == logevents.PEER_RECOVERED for e in logs)
    assert not any(e["event"] == logevents.PEER_DEAD and e["reason"] == "timeout" for e in logs)


@pytest.mark.asyncio
async def test_wait_state_raises_when_the_connection_dies_first() -> None:
    async def closer(connection: pulsewire.Connection) -> None:
        await connection.close()

    async with await pulsewire.serve(closer) as listener:
        client = await pulsewire.connect("127.0.0.1", listener.port)
        async with asyncio.timeout(5):
            with pytest.raises(pulsewire.PeerDeadError):
                await client.wait_state(pulsewire.State.SUSPECT)
            assert await client.wait_state(pulsewire.State.DEAD) is pulsewire.State.DEAD
