"""The accept loop backs off when accept() fails for want of resources, and says so rarely."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest
import structlog

from pulsewire import logevents
from pulsewire._log import get_logger
from pulsewire.asyncio.acceptor import Acceptor


class OutOfFiles(socket.socket):
    """A listening socket whose accept() fails with EMFILE until told otherwise."""

    failing = True
    calls = 0

    def accept(self) -> tuple[socket.socket, object]:
        type(self).calls += 1
        if type(self).failing:
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


class Made(asyncio.Protocol):
    made = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        type(self).made.set()
        transport.close()


@pytest.mark.asyncio
async def test_out_of_files_the_acceptor_backs_off_logs_once_and_recovers() -> None:
    listening = OutOfFiles(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    listening.listen(8)
    Made.made = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        acceptor = Acceptor(
            [listening], Made, ssl=None, ssl_handshake_timeout=None, log=get_logger()
        )
        await acceptor.start()
        client = socket.create_connection(("127.0.0.1", listening.getsockname()[1]))
        try:
            # The connection waits in the backlog: the socket stays readable, and a loop
            # that retried at once would call accept() thousands of times a second.
            await asyncio.sleep(1.0)  # the point: time passes with accept() failing
            failures = OutOfFiles.calls
            OutOfFiles.failing = False
            async with asyncio.timeout(5):
                await Made.made.wait()  # accepted at the next try
        finally:
            client.close()
            acceptor.close()
            await acceptor.wait_closed()
    print(f"\n{failures} failed accept() calls in 1 s; {acceptor.accept_failures} counted")
    # 0.1 + 0.2 + 0.4 s of back-off fit in the second: four tries, not thousands.
    assert 3 <= failures <= 5
    assert acceptor.accept_failures == failures
    lines = [e for e in logs if e["event"] == logevents.SERVER_ACCEPT_FAILED]
    assert len(lines) == 1
    assert lines[0]["error"] == "EMFILE: Too many open files"
    assert lines[0]["log_level"] == "error"
    assert "exc_info" not in lines[0]  # never a traceback
