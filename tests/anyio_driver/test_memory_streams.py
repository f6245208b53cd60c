"""``pulsewire.testing.memory_stream_pair``: in-memory byte streams for the anyio driver."""

from __future__ import annotations

import anyio
import pytest

from pulsewire.testing import memory_stream_pair

pytestmark = pytest.mark.anyio


async def test_what_one_end_sends_the_other_receives_split_to_its_reads() -> None:
    left, right = memory_stream_pair()
    await left.send(b"hello world")
    assert await right.receive(5) == b"hello"
    assert await right.receive() == b" world"
    await right.send(b"back")
    assert await left.receive() == b"back"
    await left.aclose()
    await right.aclose()


async def test_a_frozen_end_holds_its_bytes_until_thawed() -> None:
    left, right = memory_stream_pair()
    left.freeze()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(left.send, b"held")
        with anyio.move_on_after(0.05) as waited:
            await right.receive()
        assert waited.cancelled_caught  # nothing arrived while frozen
        await right.send(b"still heard")  # a frozen end's own inbox fills up, unread
        left.thaw()
        with anyio.fail_after(5):
            assert await right.receive() == b"held"
    assert await left.receive() == b"still heard"
    await left.aclose()
    await right.aclose()


async def test_the_end_of_a_stream_is_seen_by_the_other_end() -> None:
    left, right = memory_stream_pair()
    await left.send_eof()
    with pytest.raises(anyio.EndOfStream):
        await right.receive()
    await left.aclose()
    with pytest.raises(anyio.BrokenResourceError):
        await right.send(b"nobody reads")  # the other end has gone
    await right.aclose()
