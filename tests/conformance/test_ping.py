"""``Connection.ping()`` on both drivers: a round trip measured on demand, and the death
raised to a caller whose PING will never be answered."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

import pulsewire

if TYPE_CHECKING:
    from conftest import Adapter

pytestmark = pytest.mark.anyio

#: No jitter: after a ping() the next scheduled PING is a full interval away, while the
#: next ping() may go after half of one; a long timeout: no TIMEOUT verdict in this test.
POLICY = pulsewire.Policy(interval=0.2, timeout=5.0, jitter=0.0)
PEER_POLICY = ("--interval", "0.2", "--timeout", "5")


async def test_ping_measures_a_round_trip_and_raises_when_the_peer_dies_first(
    adapter: Adapter, spawn
) -> None:
    peer = await spawn("server", *PEER_POLICY, *adapter.peer_flags)
    async with adapter.connect(adapter.peer_target(peer.ready), policy=POLICY) as connection:
        with anyio.fail_after(5):
            rtt = await connection.ping()
        # Loopback: well under 1 s. uvloop's clock ticks in whole milliseconds: 0.0 is a
        # true reading there.
        assert 0 <= rtt < 1.0
        peer.freeze()  # no PONG from now on
        before = connection.stats()
        raised: list[pulsewire.PeerDeadError] = []

        async def ping() -> None:
            with pytest.raises(pulsewire.PeerDeadError) as error:
                await connection.ping()
            raised.append(error.value)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(ping)
                # The PING is in flight once it is counted (no event says so; no scheduled
                # PING can come first, see POLICY).
                while connection.stats().pings_sent == before.pings_sent:  # noqa: ASYNC110
                    await anyio.sleep(0.005)
                peer.kill()
        after = connection.stats()
    assert len(raised) == 1
    death = raised[0].death
    assert death is connection.death
    assert death.reason in (pulsewire.Reason.EOF, pulsewire.Reason.RESET)
    assert after.pings_sent >= before.pings_sent + 1
    assert after.pongs_received == before.pongs_received
