"""``connect()`` over real sockets: negotiation with the server, and how failures surface."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from structlog.testing import capture_logs

import pulsewire
from pulsewire import CloseCode, Policy, Reason, logevents
from pulsewire.core.frames import FrameKind
from pulsewire.testing import decode_control, parse_frames


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


# --------------------------------------------------------------------------------------
# A peer that is not pulsewire is reported as what it is
# --------------------------------------------------------------------------------------


class RawServer:
    """A plain TCP server that accepts, optionally says ``banner``, and records what it
    receives until the client goes."""

    def __init__(self, banner: bytes = b"") -> None:
        self.banner = banner
        self.received = bytearray()
        self.done = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.banner)
        while chunk := await reader.read(4096):
            self.received += chunk
        self.done.set()
        writer.close()


@pytest.mark.asyncio
async def test_a_server_that_never_speaks_pulsewire_is_a_handshake_error(caplog):
    caplog.set_level(logging.INFO, logger="pulsewire")
    raw = RawServer()
    policy = Policy(handshake_timeout=0.5)
    server = await asyncio.start_server(raw, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        started = asyncio.get_running_loop().time()
        with pytest.raises(pulsewire.HandshakeError) as raised:
            await pulsewire.connect("127.0.0.1", port, policy=policy)
        waited = asyncio.get_running_loop().time() - started
        async with asyncio.timeout(5):
            await raw.done.wait()
    print(f"\nsilent server: {raised.value} (after {waited:.3f} s)")
    assert str(raised.value) == (
        f"127.0.0.1:{port} accepted the connection but sent nothing within the handshake "
        "timeout (0.5 s): it is not a pulsewire peer, or it is stuck"
    )
    assert raised.value.code == CloseCode.HANDSHAKE_TIMEOUT
    assert policy.handshake_timeout - 0.05 <= waited <= policy.handshake_timeout + 0.5
    # We told it why we left, after our own opening.
    frames = parse_frames(bytes(raw.received))
    assert [frame.kind for frame in frames] == [FrameKind.HELLO, FrameKind.CLOSE]
    assert decode_control(frames[-1]).code == CloseCode.HANDSHAKE_TIMEOUT
    # One line in the log, saying what happened (the caller has the exception: INFO).
    lines = [r.msg for r in caplog.records if r.name == "pulsewire"]
    assert [line["event"] for line in lines] == [logevents.HANDSHAKE_FAILED]
    assert caplog.records[-1].levelno == logging.INFO


@pytest.mark.asyncio
async def test_a_server_that_speaks_another_protocol_is_named():
    raw = RawServer(b"SSH-2.0-OpenSSH_9.6\r\n")
    server = await asyncio.start_server(raw, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(pulsewire.HandshakeError) as raised:
            await pulsewire.connect("127.0.0.1", port)
        async with asyncio.timeout(5):
            await raw.done.wait()
    print(f"\nSSH server: {raised.value}")
    assert "not a pulsewire peer: expected magic b'PWIR', got b'SSH-'" in str(raised.value)
    assert raised.value.code == CloseCode.UNSUPPORTED_VERSION


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"port": -1}, ValueError, "port must be in 1-65535, not -1"),
        ({"port": 65536}, ValueError, "port must be in 1-65535, not 65536"),
        ({"port": 0}, ValueError, "not 0"),
        ({"port": "80"}, TypeError, "port must be an int, not str"),
        ({"port": True}, TypeError, "port must be an int, not bool"),
        ({"host": b"localhost"}, TypeError, "host must be a str, not bytes"),
        ({"server_hostname": "x"}, pulsewire.UsageError, "only means something with ssl"),
        ({"ssl": True}, TypeError, "ssl must be an ssl.SSLContext"),
        ({"logger": print}, TypeError, "logger= takes"),
        ({"policy": Policy.lan}, TypeError, "policy must be a Policy, not method"),
        ({"name": "n" * 257}, pulsewire.UsageError, "name longer than 256"),
    ],
)
async def test_bad_arguments_are_said_before_any_io(kwargs, error, match):
    arguments = {"host": "127.0.0.1", "port": 7, **kwargs}
    host, port = arguments.pop("host"), arguments.pop("port")
    with pytest.raises(error, match=match):
        await pulsewire.connect(host, port, **arguments)


@pytest.mark.asyncio
async def test_a_host_name_that_cannot_be_encoded_is_a_connect_error():
    # IDNA refuses a label longer than 63 characters (a UnicodeError, not an OSError).
    with pytest.raises(pulsewire.ConnectError, match="could not connect") as raised:
        await pulsewire.connect("x" * 64 + ".example", 7000)
    assert isinstance(raised.value.__cause__, UnicodeError)
