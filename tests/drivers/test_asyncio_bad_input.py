"""Hostile or broken bytes from a raw socket kill that one connection, never the server.

Each raw peer reads what the server answers until the end of the stream and decodes it:
the server's own preamble and HELLO, then a CLOSE frame with the close code for what was
wrong, then FIN (a reset would raise instead of ending the read).
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
import structlog

import pulsewire
from pulsewire import CloseCode, Limits, Policy, logevents
from pulsewire.core import Session
from pulsewire.core.codec import Frame, FrameDecoder
from pulsewire.core.frames import Close, FrameKind, frame_header

LIMITS = Limits(max_frame_size=64 * 1024)


def hello_bytes() -> bytes:
    """A valid preamble and HELLO, made by the sans-I/O session."""
    return bytes(Session(Policy(), LIMITS, now=time.monotonic()).data_to_send())


def decode_stream(data: bytes) -> list[Frame]:
    """The frames of a whole stream, preamble included (checked by the decoder)."""
    decoder = FrameDecoder(max_frame_size=2**31)
    frames = decoder.feed(data)
    decoder.feed_eof()  # nothing left over: the stream ended on a frame boundary
    return frames


async def raw_exchange(port: int, data: bytes, within: float = 5.0) -> tuple[bytes, float]:
    """Send ``data`` on a plain socket; return everything received until FIN, and when."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = loop.time()
    try:
        if data:
            writer.write(data)
        async with asyncio.timeout(within):
            received = await reader.read()  # ConnectionResetError if the server sent RST
        return received, loop.time() - started
    finally:
        writer.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("garbage", "code", "kinds", "handshaken"),
    [
        # The server (the responder) sends its HELLO only once it has accepted ours.
        pytest.param(
            b"GET / HTTP/1.1\r\n\r\n",
            CloseCode.UNSUPPORTED_VERSION,
            [FrameKind.CLOSE],
            False,
            id="wrong-magic",
        ),
        pytest.param(
            b"PWIR\x02" + hello_bytes()[5:],
            CloseCode.UNSUPPORTED_VERSION,
            [FrameKind.CLOSE],
            False,
            id="version",
        ),
        pytest.param(
            hello_bytes() + frame_header(FrameKind.DATA, 0, LIMITS.max_frame_size + 1),
            CloseCode.TOO_LARGE,
            [FrameKind.HELLO, FrameKind.CLOSE],
            True,
            id="oversized-frame",
        ),
    ],
)
async def test_bad_input_kills_only_its_connection(garbage, code, kinds, handshaken, accepting):
    async with await pulsewire.serve(accepting, limits=LIMITS) as listener:
        good = await pulsewire.connect("127.0.0.1", listener.port, limits=LIMITS)
        served_good = await accepting.next()

        received, _ = await raw_exchange(listener.port, garbage)

        frames = decode_stream(received)
        assert [frame.kind for frame in frames] == kinds
        close = msgspec.msgpack.decode(frames[-1].payload, type=Close)
        print(f"\n{code.name}: the server said CLOSE({close.code}, {close.reason!r}), then FIN")
        assert close.code == code

        # The other connection, on the same server, did not notice.
        async with asyncio.timeout(5):
            await good.send(b"still there?")
            assert await served_good.recv() == b"still there?"
            await served_good.send(b"yes")
            assert await good.recv() == b"yes"
        assert good.state is pulsewire.State.ALIVE
        stats = listener.stats()
        # Counted as a death once the handshake completed, as a failed handshake before.
        failed = {"protocol_error": 1}
        assert (stats.deaths, stats.handshake_failures) == (
            (failed, {}) if handshaken else ({}, failed)
        )
        assert stats.accepted == 2
        assert stats.active == 1


@pytest.mark.asyncio
async def test_every_bad_connection_is_counted_by_reason(accepting):
    policy = Policy(handshake_timeout=0.5)
    async with await pulsewire.serve(accepting, policy=policy, limits=LIMITS) as listener:
        good = await pulsewire.connect("127.0.0.1", listener.port)
        await accepting.next()
        await raw_exchange(listener.port, b"\x00" * 64)
        await raw_exchange(listener.port, b"PWIR\x07")
        await raw_exchange(
            listener.port, hello_bytes() + frame_header(FrameKind.PING, 0, 1_000_000)
        )
        # Connects and then says nothing at all: convicted when the handshake deadline passes.
        received, waited = await raw_exchange(listener.port, b"")
        print(f"\nsilent handshake: dropped after {waited:.3f} s (deadline 0.5 s)")
        assert 0.5 - 0.05 <= waited <= 0.5 + 0.5
        # No HELLO from the server (it answers ours), just the reason it gives up.
        frames = decode_stream(received)
        assert [frame.kind for frame in frames] == [FrameKind.CLOSE]
        close = msgspec.msgpack.decode(frames[0].payload, type=Close)
        assert close.code == CloseCode.HANDSHAKE_TIMEOUT
        # The PING too large came after a HELLO: a death; the others failed the handshake.
        assert listener.stats().deaths == {"protocol_error": 1}
        assert listener.stats().handshake_failures == {"protocol_error": 2, "timeout": 1}
        assert listener.stats().active == 1
        assert good.state is pulsewire.State.ALIVE


@pytest.mark.asyncio
async def test_handshake_that_never_comes_dies_of_timeout():
    policy = Policy(handshake_timeout=0.5)

    class Watch(pulsewire.Server):
        async def on_dead(self, connection: pulsewire.Connection, death: pulsewire.Death) -> None:
            raise AssertionError("on_dead without on_connect: hooks come in pairs")

    with structlog.testing.capture_logs() as logs:
        async with await pulsewire.serve(Watch(), policy=policy) as listener:
            _, waited = await raw_exchange(listener.port, b"")  # returns when the server closes
            assert listener.stats().handshake_failures == {"timeout": 1}
            assert listener.stats().deaths == {}
    # One line, and it says what happened: not a death of a connection, a failed handshake.
    assert [event for event in logs if event["event"] == logevents.PEER_DEAD] == []
    (dead,) = [event for event in logs if event["event"] == logevents.HANDSHAKE_FAILED]
    print(f"\nno HELLO: {dead['event']} ({dead['reason']}) after {waited:.3f} s (deadline 0.5 s)")
    assert (dead["reason"], dead["source"]) == ("timeout", "heartbeat")
    assert dead["log_level"] == "warning"
    assert "no HELLO within 0.5 s" in dead["error"]
    assert dead["close_code"] == CloseCode.HANDSHAKE_TIMEOUT
    assert policy.handshake_timeout - 0.05 <= waited <= policy.handshake_timeout + 0.5
