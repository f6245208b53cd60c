"""When a reconnecting client stops, on both drivers: the same rules, the same errors.

A refusal that retrying cannot fix (here: a policy the peer cannot meet) stops the client
after one attempt; ``max_attempts`` stops it after that many failures in a row;
``retry_if`` overrides both ways. The error reaches the caller once: from
``connection()``, from ``async for``, or, if the block never asked, from the ``async
with`` on exit. ``stats()`` is current when the caller looks: a failed attempt is counted
before ``retry_if`` hears of it, a death before anyone waiting on the connection wakes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
import structlog

import pulsewire
from pulsewire import Backoff, CloseCode, Policy, logevents

if TYPE_CHECKING:
    from conftest import Adapter

pytestmark = pytest.mark.anyio

#: Retries come quickly: a client that does not stop would make dozens of attempts.
FAST = Backoff(initial=0.02, maximum=0.1)
POLICY = Policy(interval=0.2, timeout=1.0)
PEER_POLICY = ("--interval", "0.2", "--timeout", "5")
#: We accept the peer's pings only every 2 s: it cannot meet its own 1 s timeout, and the
#: handshake ends with POLICY_MISMATCH, every time.
REFUSING_PEER = ("--interval", "0.2", "--timeout", "1")
REFUSED = Policy(interval=0.2, timeout=3.0, min_peer_interval=2.0)


async def test_a_refused_client_stops_after_one_attempt(adapter: Adapter, spawn) -> None:
    peer = await spawn("server", *REFUSING_PEER, *adapter.peer_flags)
    client = adapter.client(adapter.peer_target(peer.ready), policy=REFUSED, backoff=FAST)
    with structlog.testing.capture_logs() as logs:
        async with client:
            with pytest.raises(pulsewire.HandshakeError) as raised, anyio.fail_after(10):
                await client.connection()
        # The block saw the error: leaving it did not raise it a second time.
    assert raised.value.code == CloseCode.POLICY_MISMATCH
    stats = client.stats()
    assert (stats.failed_attempts, stats.connects) == (1, 0)
    (gave_up,) = [e for e in logs if e["event"] == logevents.CLIENT_GAVE_UP]
    assert (gave_up["log_level"], gave_up["attempts"]) == ("error", 1)
    assert [e for e in logs if e["event"] == logevents.CLIENT_CONNECT_FAILED] == []


async def test_max_attempts_stops_the_loop_with_the_last_error_as_cause(adapter: Adapter) -> None:
    client = adapter.client(adapter.nowhere(), policy=POLICY, backoff=FAST, max_attempts=3)

    async def iterate() -> None:
        async with client:
            with anyio.fail_after(10):
                async for _ in client:
                    raise AssertionError("nothing listens there")

    with pytest.raises(pulsewire.ConnectError) as raised:
        await iterate()
    assert "after 3 failed attempts in a row; the last: " in str(raised.value)
    cause = raised.value.__cause__
    assert isinstance(cause, pulsewire.ConnectError)
    assert not isinstance(cause, pulsewire.HandshakeError)  # refused: no handshake at all
    assert client.stats().failed_attempts == 3


async def test_a_retry_if_that_always_says_yes_keeps_retrying(adapter: Adapter, spawn) -> None:
    peer = await spawn("server", *REFUSING_PEER, *adapter.peer_flags)
    asked: list[tuple[pulsewire.ConnectError, int]] = []
    three = anyio.Event()

    def always(error: pulsewire.ConnectError) -> bool:
        asked.append((error, client.stats().failed_attempts))
        if len(asked) == 3:
            three.set()
        return True

    client = adapter.client(
        adapter.peer_target(peer.ready), policy=REFUSED, backoff=FAST, retry_if=always
    )
    async with client:  # it never gives up: leaving the block closes it, quietly
        with anyio.fail_after(10):
            await three.wait()
    # The refusal that stops the default client three times over; each counted first.
    assert all(
        isinstance(error, pulsewire.HandshakeError) and error.code == CloseCode.POLICY_MISMATCH
        for error, _ in asked
    )
    assert [counted for _, counted in asked] == list(range(1, len(asked) + 1))
    stats = client.stats()
    assert (stats.failed_attempts, stats.connects) == (len(asked), 0)
    assert len(asked) >= 3


async def test_the_exit_raises_the_error_the_block_did_not_see(adapter: Adapter) -> None:
    asked: list[pulsewire.ConnectError] = []
    gave_up = anyio.Event()

    def never(error: pulsewire.ConnectError) -> bool:
        asked.append(error)
        gave_up.set()
        return False

    client = adapter.client(adapter.nowhere(), policy=POLICY, backoff=FAST, retry_if=never)

    async def a_block_that_never_asks_for_the_connection() -> None:
        async with client:
            with anyio.fail_after(10):
                await gave_up.wait()

    with pytest.raises(pulsewire.ConnectError) as raised:
        await a_block_that_never_asks_for_the_connection()
    assert raised.value is asked[0]  # an error retry_if would not retry: as it came
    assert client.stats().failed_attempts == 1


async def test_a_death_is_in_the_stats_when_the_loop_sees_it(adapter: Adapter, spawn) -> None:
    peer = await spawn("server", *PEER_POLICY, *adapter.peer_flags)
    client = adapter.client(adapter.peer_target(peer.ready), policy=POLICY, backoff=FAST)
    async with client:
        with anyio.fail_after(10):
            async for connection in client:
                peer.kill()
                death = await connection.wait_dead()
                stats = client.stats()
                break
    assert (stats.connects, stats.deaths) == (1, {death.reason.value: 1})
