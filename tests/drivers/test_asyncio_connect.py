"""``connect()`` over real sockets: negotiation with the server, and how failures surface."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from structlog.testing import capture_logs

import pulsewire
from pulsewire import CloseCode, Policy, Reason


@pytest.mark.asyncio
async def test_interval_below_the_servers_minimum_is_raised(accepting):
    server_policy = Policy(interval=1.0, timeout=5.0, min_peer_interval=0.5)
    client_policy = Policy(interval=0.1, timeout=2.0)
    async with await pulsewire.serve(accepting, policy=server_policy) as listener:
        client = await pulsewire.connect("127.0.0.1", listener.port, policy=client_policy)
        served = await accepting.next()
        assert client.negotiated is not None
        assert served.negotiated is not None
        print(
            f"\nnegotiated: client pings every {client.negotiated.ping_interval} s "
            f"(asked {client_policy.interval} s), server every "
            f"{served.negotiated.ping_interval} s"
        )
        # The client asked for 0.1 s; the server accepts no faster than 0.5 s.
        assert client.negotiated.ping_interval == 0.5
        assert served.negotiated.peer_ping_interval == 0.5
        assert served.negotiated.ping_interval == 1.0
        assert client.negotiated.peer_ping_interval == 1.0
        await client.close()


@pytest.mark.asyncio
async def test_incompatible_policies_fail_the_handshake(accepting):
    # The server accepts a ping at most every 2 s; the client must convict within 1 s.
    server_policy = Policy(interval=1.0, timeout=5.0, min_peer_interval=2.0)
    client_policy = Policy(interval=0.2, timeout=1.0)
    deaths: list[pulsewire.Death] = []
    died = asyncio.Event()

    class Watch(pulsewire.Server):
        async def on_dead(self, connection: pulsewire.Connection, death: pulsewire.Death) -> None:
            deaths.append(death)
            died.set()

    async with await pulsewire.serve(Watch(), policy=server_policy) as listener:
        with pytest.raises(pulsewire.HandshakeError) as raised:
            await pulsewire.connect("127.0.0.1", listener.port, policy=client_policy)
        print(f"\nincompatible: {raised.value}")
        assert raised.value.code == CloseCode.POLICY_MISMATCH
        assert isinstance(raised.value, pulsewire.ConnectError)
        # The server was told why: the client's CLOSE(POLICY_MISMATCH) blames it.
        async with asyncio.timeout(5):
            await died.wait()
        assert deaths[0].reason is Reason.PROTOCOL_ERROR
        assert deaths[0].close_code == CloseCode.POLICY_MISMATCH


@pytest.mark.asyncio
async def test_refused_port_raises_connect_error(caplog):
    with socket.socket() as probe:  # a port that was free a moment ago, and nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.DEBUG, logger="asyncio")
    with capture_logs() as logs, pytest.raises(pulsewire.ConnectError) as raised:
        await pulsewire.connect("127.0.0.1", port)
    print(f"\nrefused: {type(raised.value).__name__}: {raised.value}")
    assert type(raised.value) is pulsewire.ConnectError
    assert not isinstance(raised.value, OSError)
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)
    assert f"127.0.0.1:{port}" in str(raised.value)
    # No noise: nothing logged by pulsewire or by asyncio ("exception never retrieved"...).
    assert logs == []
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []


@pytest.mark.asyncio
async def test_server_refusing_our_proposal_is_reported_with_its_code(spawn_peer):
    # Here the *server* finds the proposals incompatible: we accept its pings at most every
    # 2 s, and it must convict within 1 s. It answers our HELLO with CLOSE(POLICY_MISMATCH).
    server = await spawn_peer("server", "--interval", "0.5", "--timeout", "1.0")
    client_policy = Policy(interval=2.0, timeout=5.0, min_peer_interval=2.0)
    # The server (the responder) sends its HELLO only after accepting ours, so connect()
    # never returns a connection the server is about to refuse.
    for _ in range(20):
        with pytest.raises(pulsewire.HandshakeError) as refused:
            await pulsewire.connect("127.0.0.1", int(server.ready[0]), policy=client_policy)
        assert refused.value.code == CloseCode.POLICY_MISMATCH  # the server's code
        assert isinstance(refused.value.__cause__, pulsewire.PeerDeadError)
        assert refused.value.__cause__.death.close_code == CloseCode.POLICY_MISMATCH
    print(f"\nrefused by the server: {refused.value}")
