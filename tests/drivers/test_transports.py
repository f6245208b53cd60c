"""Every way in: TCP, Unix sockets, sockets the caller made, and asyncio streams taken over."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import pulsewire
from pulsewire.asyncio.streams import take_buffered
from pulsewire.testing import data_frame, opening_bytes

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets")


async def echo(connection: pulsewire.Connection) -> None:
    async for message in connection:
        await connection.send(message)


def is_socket(path: Path) -> bool:
    return path.is_socket()


async def round_trip(connection: pulsewire.Connection, message: bytes = b"ping") -> bytes:
    """Send ``message`` to an echo server and return the echo."""
    async with asyncio.timeout(5):
        await connection.send(message)
        return await connection.recv()


@pytest.fixture
def socket_path(tmp_path: Path) -> Iterator[Path]:
    # AF_UNIX paths are short (108 bytes): pytest's tmp_path can be longer than that.
    short = Path(os.environ.get("TMPDIR", "/tmp")) / f"pw-{os.getpid()}-{id(tmp_path)}.sock"
    yield short
    short.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------
# Unix sockets
# --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_unix_socket_carries_messages_and_heartbeats(socket_path, accepting) -> None:
    policy = pulsewire.Policy(interval=0.05, timeout=0.25)
    async with await pulsewire.serve_unix(accepting, socket_path, policy=policy) as listener:
        assert listener.path == str(socket_path)
        assert is_socket(socket_path)
        with pytest.raises(pulsewire.UsageError, match="Unix socket"):
            _ = listener.port
        async with await pulsewire.connect_unix(socket_path, policy=policy) as connection:
            served = await accepting.next()
            await connection.send(b"over unix")
            async with asyncio.timeout(5):
                assert await served.recv() == b"over unix"
            assert connection.peer_address == served.peer_address == f"unix:{socket_path}"
            # No TCP options on a Unix socket: nothing was asked of the kernel.
            assert connection.kernel_report is None
            assert served.kernel_report is None
            # Idle for twice the timeout: only the heartbeats keep it alive.
            await asyncio.sleep(2 * policy.timeout)
            assert connection.state is pulsewire.State.ALIVE
            assert connection.stats().pongs_received >= 1
    # The listener removes the socket file it made.
    assert not is_socket(socket_path)


@pytest.mark.asyncio
async def test_serve_unix_replaces_a_stale_socket_file(socket_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(socket_path))
    stale.close()  # the file stays behind, as after a crash
    assert is_socket(socket_path)
    async with (
        await pulsewire.serve_unix(echo, socket_path),
        await pulsewire.connect_unix(str(socket_path)) as connection,
    ):
        assert await round_trip(connection) == b"ping"


@pytest.mark.asyncio
async def test_connect_unix_to_nothing_raises_connect_error(socket_path: Path) -> None:
    with pytest.raises(pulsewire.ConnectError, match=f"unix:{socket_path}") as raised:
        await pulsewire.connect_unix(socket_path)
    assert isinstance(raised.value.__cause__, FileNotFoundError)


# --------------------------------------------------------------------------------------
# Sockets made by the caller
# --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_serve_and_connect_take_sockets_the_caller_made() -> None:
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    async with await pulsewire.serve(echo, sock=listening) as listener:
        assert listener.port == port
        assert listener.path is None
        raw = socket.create_connection(("127.0.0.1", port))
        raw.setblocking(False)
        async with await pulsewire.connect(sock=raw) as connection:
            assert await round_trip(connection) == b"ping"
            assert connection.peer_address == f"127.0.0.1:{port}"
            assert connection.get_extra_info("socket").fileno() == raw.fileno()
            # A TCP socket gets the socket options, as with host and port.
            assert connection.kernel_report is not None


@pytest.mark.asyncio
async def test_a_connected_unix_socket_pair_is_a_connection() -> None:
    left, right = socket.socketpair()
    server_side = asyncio.ensure_future(pulsewire.connect(sock=left))
    # Two initiators cannot shake hands: the other end takes over as a responder, here
    # through a stream pair, which is how another library would hand one over.
    reader, writer = await asyncio.open_connection(sock=right)
    responder = await pulsewire.wrap_streams(reader, writer, initiator=False)
    initiator = await server_side
    async with initiator, responder:
        await initiator.send(b"over a socketpair")
        async with asyncio.timeout(5):
            assert await responder.recv() == b"over a socketpair"
        assert initiator.kernel_report is None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda s: pulsewire.connect("127.0.0.1", 1, sock=s), pulsewire.UsageError, "not both"),
        (lambda s: pulsewire.connect(), pulsewire.UsageError, "needs host and port"),
        (lambda s: pulsewire.connect("127.0.0.1"), pulsewire.UsageError, "needs host and port"),
        (lambda s: pulsewire.serve(echo, port=1, sock=s), pulsewire.UsageError, "not both"),
        (lambda s: pulsewire.connect(sock=s), ValueError, "not connected"),
        (lambda s: pulsewire.connect(sock=5), TypeError, "socket.socket, not int"),
        (lambda s: pulsewire.serve(echo, name="n" * 257), pulsewire.UsageError, "name longer"),
        (lambda s: pulsewire.serve_unix(echo, "x", limits=5), TypeError, "limits must be"),
    ],
    ids=[
        "connect-both",
        "connect-none",
        "connect-no-port",
        "serve-both",
        "unconnected",
        "type",
        "serve-name",
        "serve-limits",
    ],
)
async def test_bad_arguments_are_refused_before_any_io(call, error, match) -> None:
    with socket.socket() as sock, pytest.raises(error, match=match):
        await call(sock)


@pytest.mark.asyncio
async def test_a_datagram_socket_is_refused_up_front() -> None:
    with (
        socket.socket(type=socket.SOCK_DGRAM) as sock,
        pytest.raises(ValueError, match="SOCK_STREAM"),
    ):
        await pulsewire.serve(echo, sock=sock)


# --------------------------------------------------------------------------------------
# asyncio streams taken over
# --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_wrap_streams_keeps_the_bytes_the_reader_had_buffered() -> None:
    """The peer writes a greeting line and, in the same write, the pulsewire opening and a
    first message. readline() takes the greeting; the reader holds the rest; pulsewire
    must start from there."""
    sent = b"HELLO plain-text v1\r\n" + opening_bytes() + data_frame(b"first")
    with socket.create_server(("127.0.0.1", 0)) as listening:
        ours = socket.create_connection(listening.getsockname())
        theirs, _ = listening.accept()
        with theirs:
            theirs.sendall(sent)
            # Everything has arrived, so the reader's first read takes it all in one piece.
            ours.settimeout(5)
            assert len(ours.recv(len(sent), socket.MSG_PEEK | socket.MSG_WAITALL)) == len(sent)
            reader, writer = await asyncio.open_connection(sock=ours)
            assert await reader.readline() == b"HELLO plain-text v1\r\n"

            connection = await pulsewire.wrap_streams(reader, writer, initiator=True)
            async with asyncio.timeout(5):
                assert await connection.recv() == b"first"
            assert connection.state is pulsewire.State.ALIVE
            assert await reader.read() == b""  # the reader now reads as at end of stream
            connection.abort()


@pytest.mark.asyncio
async def test_wrapped_streams_work_both_ways_and_outlive_the_stream_objects() -> None:
    served: asyncio.Queue[pulsewire.Connection] = asyncio.Queue()

    async def take_over(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readexactly(6) == b"UPGRADE"[:6]
        await reader.readexactly(1)
        writer.write(b"OK\n")
        served.put_nowait(await pulsewire.wrap_streams(reader, writer, initiator=False))

    server = await asyncio.start_server(take_over, "127.0.0.1", 0)
    async with server:
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(b"UPGRADE")
        assert await reader.readline() == b"OK\n"
        client = await pulsewire.wrap_streams(
            reader, writer, initiator=True, policy=pulsewire.Policy(interval=0.05, timeout=1)
        )
        async with asyncio.timeout(5):
            responder = await served.get()
        # A StreamWriter closes its transport when collected: pulsewire keeps it alive.
        del reader, writer
        gc.collect()
        async with client, responder:
            await client.send(b"up")
            async with asyncio.timeout(5):
                assert await responder.recv() == b"up"
                await asyncio.sleep(0.2)  # a few heartbeats
            assert client.state is pulsewire.State.ALIVE
            assert client.stats().pongs_received >= 1


@pytest.mark.asyncio
async def test_wrap_streams_refuses_a_stream_that_has_ended() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    async with server:
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        assert await reader.read() == b""
        with pytest.raises(pulsewire.ConnectError, match="already ended"):
            await pulsewire.wrap_streams(reader, writer, initiator=True)
        writer.close()


def test_take_buffered_returns_what_the_reader_holds_without_waiting() -> None:
    # wrap_streams relies on this: after feed_eof(), StreamReader.read() completes on its
    # first step. If a future asyncio made it wait, take_buffered raises (and this fails).
    loop = asyncio.new_event_loop()
    try:
        reader = asyncio.StreamReader(loop=loop)
        reader.feed_data(b"already ")
        reader.feed_data(b"here")
        assert take_buffered(reader) == b"already here"
        assert take_buffered(asyncio.StreamReader(loop=loop)) == b""
    finally:
        loop.close()
