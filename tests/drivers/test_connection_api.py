"""The Connection handle: what it accepts, how it closes, what it says after a local close."""

from __future__ import annotations

import asyncio

import pytest

import pulsewire
from pulsewire import CloseCode, Reason


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("message", "named"),
    [(5, "not int"), (None, "not NoneType"), ("text", "not str: encode text first")],
)
async def test_send_takes_bytes_like_only_and_says_what_it_got(message, named, accepting):
    async with (
        await pulsewire.serve(accepting) as listener,
        await pulsewire.connect("127.0.0.1", listener.port) as connection,
    ):
        served = await accepting.next()
        with pytest.raises(TypeError, match=f"bytes, bytearray or memoryview, {named}"):
            await connection.send(message)
        # Nothing was sent: the next message is the first the peer sees.
        await connection.send(bytearray(b"the first"))
        async with asyncio.timeout(5):
            assert await served.recv() == b"the first"


@pytest.mark.asyncio
async def test_async_with_closes_the_connection_in_order(accepting):
    async with await pulsewire.serve(accepting) as listener:
        async with await pulsewire.connect("127.0.0.1", listener.port) as connection:
            served = await accepting.next()
            await connection.send(b"last words")
        # Queued messages went first, then CLOSE(NORMAL), answered: a clean close.
        assert connection.death is not None
        assert connection.death.reason is Reason.LOCAL_CLOSE
        assert connection.death.clean
        async with asyncio.timeout(5):
            assert [message async for message in served] == [b"last words"]
            death = await served.wait_dead()
        assert death.close_code == CloseCode.NORMAL


@pytest.mark.asyncio
async def test_async_with_tells_the_peer_when_the_block_raised(accepting):
    async with await pulsewire.serve(accepting) as listener:
        served: list[pulsewire.Connection] = []

        async def fail_inside() -> None:
            async with await pulsewire.connect("127.0.0.1", listener.port):
                served.append(await accepting.next())
                raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            await fail_inside()
        async with asyncio.timeout(5):
            death = await served[0].wait_dead()
        assert (death.close_code, death.close_reason) == (
            CloseCode.INTERNAL_ERROR,
            "ZeroDivisionError",
        )


@pytest.mark.asyncio
async def test_after_close_the_error_says_what_the_caller_did(accepting):
    async with await pulsewire.serve(accepting) as listener:
        connection = await pulsewire.connect("127.0.0.1", listener.port)
        await connection.close()
        with pytest.raises(pulsewire.LocalClosedError) as raised:
            await connection.send(b"too late")
        assert str(raised.value) == "the connection was closed by this side (close() was called)"
        assert raised.value.death.reason is Reason.LOCAL_CLOSE  # the record is kept
        assert raised.value.death is connection.death

        aborted = await pulsewire.connect("127.0.0.1", listener.port)
        aborted.abort()
        with pytest.raises(pulsewire.LocalClosedError) as raised:
            await aborted.recv()
        assert str(raised.value) == "the connection was closed by this side (abort() was called)"

        coded = await pulsewire.connect("127.0.0.1", listener.port)
        await coded.close(4001, "bye")
        with pytest.raises(
            pulsewire.LocalClosedError, match=r"close\(\) was called with code 4001"
        ):
            await coded.send(b"x")


@pytest.mark.asyncio
async def test_a_peer_death_still_describes_the_death(accepting):
    async with await pulsewire.serve(accepting) as listener:
        connection = await pulsewire.connect("127.0.0.1", listener.port)
        served = await accepting.next()
        served.abort()
        async with asyncio.timeout(5):
            await connection.wait_dead()
        with pytest.raises(pulsewire.PeerDeadError, match=r"^(eof|reset) \(kernel\) after"):
            await connection.send(b"x")
