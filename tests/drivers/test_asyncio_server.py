"""The server side and the Connection API on real sockets: hooks, handlers, and errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

import pulsewire
from pulsewire import CloseCode, Death, Policy, Reason, Source, logevents


class Recorder(pulsewire.Server):
    """Records every hook call, in order, and lets the test wait for each kind."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._seen: dict[str, asyncio.Event] = {}

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        self.seen(call[0]).set()

    def seen(self, kind: str) -> asyncio.Event:
        return self._seen.setdefault(kind, asyncio.Event())

    async def wait_for(self, kind: str, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            await self.seen(kind).wait()

    async def on_connect(self, connection: pulsewire.Connection) -> None:
        self._record("connect", connection.peer_name)
        await connection.send(b"hello")  # the peer echoes it back to on_message

    async def on_message(self, connection: pulsewire.Connection, message: bytes) -> None:
        self._record("message", message)

    async def on_suspect(self, connection: pulsewire.Connection) -> None:
        self._record("suspect", connection.state)

    async def on_recover(self, connection: pulsewire.Connection) -> None:
        self._record("recover", connection.state)

    async def on_dead(self, connection: pulsewire.Connection, death: Death) -> None:
        self._record("dead", death.reason, death.source)


@pytest.mark.asyncio
async def test_server_hooks_run_in_order_through_suspicion_and_recovery(spawn_peer):
    policy = Policy(interval=0.2, timeout=3.0, suspect_after=0.6)
    server = Recorder()
    async with await pulsewire.serve(server, policy=policy) as listener:
        peer = await spawn_peer(
            "client", "--port", str(listener.port), "--interval", "0.2", "--timeout", "3",
            "--name", "frozen-client",
        )  # fmt: skip
        await server.wait_for("message")
        (connection,) = listener.connections
        loop = asyncio.get_running_loop()

        # Frozen past suspect_after, thawed well before the timeout: SUSPECT, then ALIVE.
        peer.freeze()
        frozen_at = loop.time()
        try:
            await server.wait_for("suspect", policy.timeout)
            suspected = loop.time() - frozen_at
        finally:
            peer.thaw()
        thawed_at = loop.time()
        await server.wait_for("recover")
        recovered = loop.time() - thawed_at
        assert connection.state is pulsewire.State.ALIVE

        await peer.write_line("close")  # the client closes in order
        await server.wait_for("dead")
        assert await peer.expect("DEAD") == ["local_close"]
        print(
            f"\nhooks: suspect {suspected:.3f} s after SIGSTOP "
            f"(suspect_after {policy.suspect_after} s), recover {recovered:.3f} s after SIGCONT"
        )
        assert server.calls == [
            ("connect", "frozen-client"),
            ("message", b"hello"),
            ("suspect", pulsewire.State.SUSPECT),
            ("recover", pulsewire.State.ALIVE),
            ("dead", Reason.EOF, Source.PEER),
        ]
        assert suspected <= policy.suspect_after + 0.5
        assert listener.stats().deaths == {"eof": 1}


@pytest.mark.asyncio
async def test_plain_handler_function_echoes_and_ends_quietly_on_orderly_close():
    finished = asyncio.Event()

    async def handler(connection: pulsewire.Connection) -> None:
        async for message in connection:
            await connection.send(message.upper())
        finished.set()  # async for ended without raising: the close was orderly

    async with await pulsewire.serve(handler) as listener:
        client = await pulsewire.connect("127.0.0.1", listener.port)
        async with asyncio.timeout(5):
            for word in (b"one", b"two", b"three"):
                await client.send(word)
                assert await client.recv() == word.upper()
            death = await client.close()
            await finished.wait()
        assert death.reason is Reason.LOCAL_CLOSE
        assert death.clean
        stats = listener.stats()
        assert (stats.accepted, stats.active, stats.deaths) == (1, 0, {"eof": 1})
        assert (stats.handshake_failures, stats.refused, stats.shed) == ({}, 0, 0)
        assert stats.inbound_held == 0  # every message was consumed


@pytest.mark.asyncio
async def test_handler_that_raises_closes_with_internal_error():
    async def handler(connection: pulsewire.Connection) -> None:
        await connection.recv()
        raise RuntimeError("boom")

    with capture_logs() as logs:
        async with await pulsewire.serve(handler) as listener:
            client = await pulsewire.connect("127.0.0.1", listener.port)
            await client.send(b"trigger")
            async with asyncio.timeout(5):
                death = await client.wait_dead()
            with pytest.raises(pulsewire.PeerDeadError) as raised:
                await client.recv()
    assert death.close_code == CloseCode.INTERNAL_ERROR
    assert death.reason is Reason.EOF
    assert death.source is Source.PEER
    assert raised.value.death is death
    errors = [log for log in logs if log["event"] == logevents.HANDLER_ERROR]
    assert len(errors) == 1
    assert errors[0]["log_level"] == "error"


@pytest.mark.asyncio
async def test_recv_and_send_after_local_close_raise_local_closed():
    async with await pulsewire.serve(echo_handler) as listener:
        client = await pulsewire.connect("127.0.0.1", listener.port)
        async with asyncio.timeout(5):
            death = await client.close()
        assert death.reason is Reason.LOCAL_CLOSE
        with pytest.raises(pulsewire.LocalClosedError) as raised:
            await client.recv()
        assert raised.value.reason is Reason.LOCAL_CLOSE
        with pytest.raises(pulsewire.LocalClosedError):
            await client.send(b"too late")
        # Iteration after our own close ends quietly.
        assert [message async for message in client] == []


async def echo_handler(connection: pulsewire.Connection) -> None:
    async for message in connection:
        await connection.send(message)


@pytest.mark.asyncio
async def test_messages_received_before_death_come_before_the_error():
    aborted: list[Death] = []

    async def handler(connection: pulsewire.Connection) -> None:
        for index in range(3):
            await connection.send(b"%d" % index)
        connection.abort()  # vanish without a CLOSE: the client sees a bare end of stream
        aborted.append(await connection.wait_dead())

    async with await pulsewire.serve(handler) as listener:
        client = await pulsewire.connect("127.0.0.1", listener.port)
        async with asyncio.timeout(5):
            death = await client.wait_dead()
        assert death.reason is Reason.EOF
        assert death.close_code is None
        assert [await client.recv() for _ in range(3)] == [b"0", b"1", b"2"]
        with pytest.raises(pulsewire.PeerDeadError) as raised:
            await client.recv()
        assert raised.value.death is death
        # On the server the verdict is its own abort, not a peer's EOF.
        assert [(d.reason, d.source) for d in aborted] == [(Reason.LOCAL_CLOSE, Source.LOCAL)]
        assert listener.stats().deaths == {"local_close": 1}


@pytest.mark.asyncio
async def test_async_for_ends_quietly_after_the_peer_closes_in_order():
    async def handler(connection: pulsewire.Connection) -> None:
        await connection.send(b"first")
        await connection.send(b"last")
        # returning closes the connection in order, after the queued messages

    async with await pulsewire.serve(handler) as listener:
        client = await pulsewire.connect("127.0.0.1", listener.port)
        async with asyncio.timeout(5):
            received = [message async for message in client]
        assert received == [b"first", b"last"]
        assert client.death is not None
        assert client.death.reason is Reason.EOF
        assert client.death.clean


@pytest.mark.asyncio
async def test_async_for_raises_after_timeout_and_send_carries_the_reason(spawn_peer, accepting):
    policy = Policy(interval=0.2, timeout=0.8)
    async with await pulsewire.serve(accepting, policy=policy) as listener:
        peer = await spawn_peer("client", "--port", str(listener.port), "--interval", "0.2")
        connection = await accepting.next()
        received: list[bytes] = []
        echoed = asyncio.Event()

        async def consume() -> None:
            async for message in connection:
                received.append(message)
                echoed.set()

        consuming = asyncio.create_task(consume())
        await connection.send(b"echo me")
        async with asyncio.timeout(5):
            await echoed.wait()
        peer.freeze()
        try:
            async with asyncio.timeout(policy.timeout + 5):
                with pytest.raises(pulsewire.PeerDeadError) as raised:
                    await consuming
        finally:
            peer.thaw()
        assert received == [b"echo me"]
        assert raised.value.reason is Reason.TIMEOUT
        with pytest.raises(pulsewire.PeerDeadError) as raised_by_send:
            await connection.send(b"anyone?")
        assert raised_by_send.value.reason is Reason.TIMEOUT
        assert raised_by_send.value.death is connection.death


async def _nothing(connection: pulsewire.Connection) -> None:
    await connection.wait_dead()


@pytest.mark.asyncio
async def test_cancelling_serve_forever_closes_the_connections_in_order() -> None:
    """Ctrl-C under asyncio.run cancels the task in serve_forever(); with a client
    connected it must still return at once (asyncio's own Server.serve_forever waits for
    every connection to close from Python 3.12), so that ``async with`` closes them."""
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def main() -> None:  # as a server program's main() runs it
        async with await pulsewire.serve(_nothing, "127.0.0.1", 0) as listener:
            port.set_result(listener.port)
            await listener.serve_forever()

    serving = asyncio.create_task(main())
    client = await pulsewire.connect("127.0.0.1", await port)
    serving.cancel()
    async with asyncio.timeout(5):
        death = await client.wait_dead()
        with pytest.raises(asyncio.CancelledError):
            await serving
    assert (death.reason, death.source, death.close_code) == (
        Reason.EOF,
        Source.PEER,
        CloseCode.GOING_AWAY,
    )


@pytest.mark.asyncio
async def test_serve_forever_returns_when_the_listener_is_closed() -> None:
    listener = await pulsewire.serve(_nothing, "127.0.0.1", 0)
    serving = asyncio.create_task(listener.serve_forever())
    await listener.close()
    async with asyncio.timeout(2):
        await serving
