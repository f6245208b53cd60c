"""In-memory anyio byte streams: run the anyio driver without sockets, on a virtual clock."""

from __future__ import annotations

import math

import anyio
from anyio.abc import ByteStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["MemoryByteStream", "memory_stream_pair"]


class MemoryByteStream(ByteStream):
    """One end of an in-memory byte stream pair (see :func:`memory_stream_pair`).

    :meth:`freeze` plays a peer whose process stopped: what it sends is held back, and
    what is sent to it piles up unread, while the stream stays open.
    """

    def __init__(
        self, send: MemoryObjectSendStream[bytes], receive: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self._send = send
        self._receive = receive
        self._leftover = b""
        self._frozen = False
        self._thawed = anyio.Event()

    def freeze(self) -> None:
        """Stop delivering: nothing this end sends reaches the other end until :meth:`thaw`."""
        self._frozen = True

    def thaw(self) -> None:
        """Deliver again, starting with what was held back since :meth:`freeze`."""
        self._frozen = False
        self._thawed.set()
        self._thawed = anyio.Event()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes`` of what the other end sent (anyio's ``ByteReceiveStream``)."""
        data = self._leftover or await self._receive.receive()
        self._leftover = data[max_bytes:]
        return data[:max_bytes]

    async def send(self, item: bytes) -> None:
        """Send ``item`` to the other end; while frozen, wait for :meth:`thaw`."""
        while self._frozen:
            await self._thawed.wait()
        await self._send.send(bytes(item))

    async def send_eof(self) -> None:
        """End this direction: the other end's next receive after the data raises
        ``anyio.EndOfStream``."""
        await self._send.aclose()

    async def aclose(self) -> None:
        """Close both directions."""
        await self._send.aclose()
        await self._receive.aclose()


def memory_stream_pair(
    max_buffer_size: float = math.inf,
) -> tuple[MemoryByteStream, MemoryByteStream]:
    """Two connected in-memory byte streams: what one end sends, the other receives.

    Each direction buffers up to ``max_buffer_size`` chunks (default: unbounded). Create
    it inside a running event loop (asyncio or trio).
    """
    a_to_b_send, a_to_b_receive = anyio.create_memory_object_stream[bytes](max_buffer_size)
    b_to_a_send, b_to_a_receive = anyio.create_memory_object_stream[bytes](max_buffer_size)
    return (
        MemoryByteStream(a_to_b_send, b_to_a_receive),
        MemoryByteStream(b_to_a_send, a_to_b_receive),
    )
