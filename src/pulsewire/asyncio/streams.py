"""``wrap_streams()``: turn an asyncio ``(StreamReader, StreamWriter)`` pair into a pulsewire
``Connection``, without losing the bytes the reader has already buffered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from pulsewire._log import LoggerLike, event_logger, get_logger
from pulsewire.asyncio.connection import Connection
from pulsewire.asyncio.opening import open_connection
from pulsewire.asyncio.protocol import PulsewireProtocol, format_address
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Limits, Policy
from pulsewire.errors import ConnectError

__all__ = ["take_buffered", "wrap_streams"]

_log = get_logger()


async def wrap_streams(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    initiator: bool,
    policy: Policy | None = None,
    limits: Limits | None = None,
    socket_options: SocketOptions | None = None,
    name: str = "",
    logger: LoggerLike | None = None,
) -> Connection:
    """Take over an asyncio stream pair, run the handshake, and return the live ``Connection``.

    For streams another library opened, or one that already carried something else (a
    plaintext greeting, an upgrade request): bytes the reader had buffered beyond what was
    read from it are the start of the pulsewire stream, and none is lost. ``initiator``:
    this side opened the connection (the client); exactly one side must be the initiator.

    From then on pulsewire owns the transport: the reader reads as at end of stream, and
    the writer must not be used (closing the connection closes the transport). TCP socket
    options are applied as by :func:`connect`; TLS, if the streams had it, keeps working.

    Raises as :func:`connect` does; :class:`~pulsewire.ConnectError` also when the stream
    has already ended or failed.
    """
    # uvloop's transports implement the interface without subclassing asyncio.Transport.
    transport = cast(asyncio.Transport, writer.transport)
    where = format_address(writer.get_extra_info("peername"))
    failed = reader.exception()
    if failed is not None:
        raise ConnectError(f"the stream from {where} has already failed: {failed}") from failed
    if transport.is_closing() or reader.at_eof():
        raise ConnectError(f"the stream from {where} has already ended")

    async def hand_over(factory: Callable[[], PulsewireProtocol]) -> object:
        protocol = factory()
        protocol.holds = writer  # a StreamWriter closes its transport when collected
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.receive(take_buffered(reader))
        transport.resume_reading()  # the StreamReader may have paused it, when full
        return protocol

    return await open_connection(
        hand_over,
        where,
        policy=policy if policy is not None else Policy(),
        limits=limits if limits is not None else Limits(),
        socket_options=socket_options if socket_options is not None else SocketOptions(),
        name=name,
        initiator=initiator,
        log=event_logger(logger, _log),
    )


def take_buffered(reader: asyncio.StreamReader) -> bytes:
    """Everything ``reader`` has buffered, taken at once, without waiting.

    Only public API: ``feed_eof()`` marks the end of what the reader will ever hold (its
    transport feeds pulsewire now), after which ``read()`` returns the buffered bytes
    without suspending, so the coroutine is stepped once, here, synchronously: no other
    callback can run in between and deliver later bytes first. Should asyncio ever make
    that ``read()`` wait, this raises instead of reordering the stream (a test checks it).
    """
    reader.feed_eof()
    reading = reader.read()
    try:
        reading.send(None)
    except StopIteration as done:
        data: bytes = done.value
        return data
    reading.close()
    raise RuntimeError(
        "asyncio.StreamReader.read() waited after feed_eof(): pulsewire.wrap_streams "
        "does not support this Python version's asyncio"
    )
