"""Log events with stable names (``pulsewire.logevents``), read with capture_logs()."""

from __future__ import annotations

import asyncio
import logging

import pytest
from structlog.testing import capture_logs

import pulsewire
from pulsewire import Policy, logevents


@pytest.mark.asyncio
async def test_connected_suspect_and_dead_events_are_logged(spawn_peer, accepting, caplog):
    # Levels apply first (the logging tree's): INFO events are wanted here.
    caplog.set_level(logging.INFO, logger="pulsewire")
    policy = Policy(interval=0.2, timeout=0.8)
    with capture_logs() as logs:
        async with await pulsewire.serve(accepting, policy=policy) as listener:
            peer = await spawn_peer(
                "client", "--port", str(listener.port), "--interval", "0.2", "--name", "logged"
            )
            connection = await accepting.next()
            peer.freeze()
            try:
                async with asyncio.timeout(policy.timeout + 5):
                    await connection.wait_dead()
            finally:
                peer.thaw()

    names = [log["event"] for log in logs]
    print(f"\nevents: {names}")
    lifecycle = [
        name
        for name in names
        if name in (logevents.PEER_CONNECTED, logevents.PEER_SUSPECT, logevents.PEER_DEAD)
    ]
    assert lifecycle == [logevents.PEER_CONNECTED, logevents.PEER_SUSPECT, logevents.PEER_DEAD]
    assert names[0] == logevents.SERVER_LISTENING
    assert names[-1] == logevents.SERVER_CLOSED

    by_name = {log["event"]: log for log in logs}
    peer_address = connection.peer_address
    connected = by_name[logevents.PEER_CONNECTED]
    assert connected["peer"] == peer_address
    assert connected["name"] == "logged"
    assert connected["ping_interval"] == 0.2
    suspect = by_name[logevents.PEER_SUSPECT]
    assert suspect["log_level"] == "warning"
    assert suspect["silence"] >= policy.effective_suspect_after - 0.05
    dead = by_name[logevents.PEER_DEAD]
    assert dead["peer"] == peer_address
    assert dead["reason"] == "timeout"
    assert dead["source"] == "heartbeat"
    assert dead["log_level"] == "warning"
    assert policy.timeout - 0.05 <= dead["silence"] <= policy.timeout + 0.5
