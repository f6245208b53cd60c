"""``pulsewire.anyio``: virtual time, typed attributes, task groups, cancellation, errors.

The faults every driver must handle the same way (frozen, killed, reset, busy, slow
reader, refused handshake) are in ``tests/conformance``; this file covers what is the
anyio driver's own: structured concurrency and trio's virtual clock.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import anyio
import pytest
import structlog
import trio.testing
from anyio.abc import SocketAttribute

import pulsewire
import pulsewire.anyio
from pulsewire import Backoff, CloseCode, Policy, Reason, Source, State
from pulsewire.anyio import PulsewireAttribute
from pulsewire.kernel import LINUX_TCP_THIN_LINEAR_TIMEOUTS
from pulsewire.testing import MemoryByteStream, memory_stream_pair

pytestmark = pytest.mark.anyio

POLICY = Policy(interval=0.2, timeout=1.0)


def mock_clock() -> Any:
    return pytest.param(
        ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}), id="trio-mockclock"
    )


async def echo_over(stream: MemoryByteStream, policy: Policy = POLICY) -> None:
    """The other end of a memory stream pair: a pulsewire echo peer."""
    async with pulsewire.anyio.wrap(stream, initiator=False, policy=policy) as connection:
        async for message in connection:
            await connection.send(message)


# ---------------------------------------------------------------- virtual time


@pytest.mark.parametrize("anyio_backend", [mock_clock()])
async def test_a_frozen_peer_is_convicted_at_exactly_its_timeout_in_virtual_time() -> None:
    wall = time.perf_counter()
    ours, theirs = memory_stream_pair()
    async with anyio.create_task_group() as peer:
        peer.start_soon(echo_over, theirs)
        async with pulsewire.anyio.wrap(ours, policy=POLICY) as connection:
            await connection.send(b"ping me")
            assert await connection.recv() == b"ping me"
            theirs.freeze()  # the peer's bytes stop reaching us; ours pile up unread
            last_evidence = anyio.current_time() - connection.stats().silence
            death = await connection.wait_dead()
            convicted_after = anyio.current_time() - last_evidence
        peer.cancel_scope.cancel()
    wall = time.perf_counter() - wall
    print(f"\nvirtual: convicted {convicted_after!r} s after the last evidence, {wall:.3f} s wall")
    assert (death.reason, death.source) == (Reason.TIMEOUT, Source.HEARTBEAT)
    assert convicted_after == pytest.approx(POLICY.timeout, abs=1e-9)
    assert death.silence == pytest.approx(POLICY.timeout, abs=1e-9)
    assert wall < 1.0


@pytest.mark.parametrize("anyio_backend", [mock_clock()])
async def test_an_hour_of_idle_heartbeats_takes_no_time() -> None:
    wall = time.perf_counter()
    ours, theirs = memory_stream_pair()
    async with anyio.create_task_group() as peer:
        peer.start_soon(echo_over, theirs)
        async with pulsewire.anyio.wrap(ours, policy=POLICY) as connection:
            await anyio.sleep(3600)
            stats = connection.stats()
            assert connection.state is State.ALIVE
        peer.cancel_scope.cancel()
    # The initiator leads: one PING every 75-100 % of the interval, each answered.
    assert 3600 / POLICY.interval <= stats.pings_sent <= 3600 / (0.75 * POLICY.interval) + 1
    assert stats.pongs_received >= stats.pings_sent - 1
    assert stats.pings_received == 0  # the follower never needed to ping
    assert time.perf_counter() - wall < 30


# ---------------------------------------------------------------- typed attributes


async def test_typed_attributes_show_the_state_and_pass_the_socket_through() -> None:
    async with anyio.create_task_group() as tasks:
        listener = await tasks.start(pulsewire.anyio.serve, echo_handler, "127.0.0.1", 0)
        async with pulsewire.anyio.connect(
            "127.0.0.1", listener.port, policy=Policy(interval=0.05, timeout=1.0)
        ) as connection:
            assert connection.extra(PulsewireAttribute.state) is State.ALIVE
            assert connection.extra(PulsewireAttribute.policy) == connection.policy
            negotiated = connection.extra(PulsewireAttribute.negotiated)
            assert negotiated is not None
            assert negotiated.ping_interval == 0.05
            assert connection.extra(PulsewireAttribute.death) is None
            await connection.send(b"x")
            assert await connection.recv() == b"x"
            while connection.stats().pongs_received == 0:
                await connection.wait_state(State.ALIVE)  # stays alive; a PONG comes next
                await anyio.sleep(0.05)
            assert connection.extra(PulsewireAttribute.rtt) == connection.rtt
            assert connection.rtt is not None
            assert 0 < connection.rtt < 0.5
            # The stream's own attributes pass through: the kernel options are on its socket.
            sock = connection.extra(SocketAttribute.raw_socket)
            assert connection.extra(SocketAttribute.remote_port) == listener.port
            report = connection.extra(PulsewireAttribute.kernel_report)
            assert report is connection.kernel_report
            assert report is not None
            applied = {option.option: option.read_back for option in report.applied}
            assert applied["TCP_THIN_LINEAR_TIMEOUTS"] == 1  # the default socket options
            assert sock.getsockopt(socket.IPPROTO_TCP, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 1
        assert connection.extra(PulsewireAttribute.state) is State.DEAD
        assert connection.extra(PulsewireAttribute.death).reason is Reason.LOCAL_CLOSE
        tasks.cancel_scope.cancel()


async def echo_handler(connection: pulsewire.anyio.Connection) -> None:
    async for message in connection:
        await connection.send(message)


# ---------------------------------------------------------------- task groups


class Recording(pulsewire.anyio.Server):
    """Records each hook with the connection's state; echoes messages."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.dead = anyio.Event()

    async def on_connect(self, connection: pulsewire.anyio.Connection) -> None:
        self.calls.append(f"connect {connection.peer_name}")

    async def on_message(self, connection: pulsewire.anyio.Connection, message: bytes) -> None:
        self.calls.append(f"message {message.decode()}")
        await connection.send(message.upper())

    async def on_dead(self, connection: pulsewire.anyio.Connection, death: pulsewire.Death) -> None:
        self.calls.append(f"dead {death.reason.value} {death.close_code}")
        self.dead.set()


async def test_a_listener_serves_in_the_callers_task_group_and_runs_the_hooks_in_order() -> None:
    hooks = Recording()
    inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with (
        anyio.create_task_group() as tasks,
        pulsewire.anyio.Listener(inner, policy=POLICY) as listener,
    ):
        tasks.start_soon(listener.serve, hooks, tasks)
        async with pulsewire.anyio.connect(
            "127.0.0.1", listener.port, policy=POLICY, name="alice"
        ) as connection:
            await connection.send(b"hi")
            assert await connection.recv() == b"HI"
        with anyio.fail_after(5):
            await hooks.dead.wait()
        assert listener.stats() == pulsewire.anyio.ListenerStats(
            accepted=1, active=0, deaths={"eof": 1}
        )
        tasks.cancel_scope.cancel()
    assert hooks.calls == ["connect alice", "message hi", "dead eof 1000"]


async def test_no_task_outlives_its_task_group() -> None:
    before = {task.id for task in anyio.get_running_tasks()}
    hooks = Recording()
    async with anyio.create_task_group() as tasks:
        listener = await tasks.start(pulsewire.anyio.serve, hooks, "127.0.0.1", 0)
        async with anyio.create_task_group() as clients:
            for name in ("a", "b", "c"):
                clients.start_soon(hold_open, listener.port, name)
            with anyio.fail_after(5):
                while len(hooks.calls) < 3:  # noqa: ASYNC110 (the hooks' own record)
                    await anyio.sleep(0.01)
            during = {task.id for task in anyio.get_running_tasks()} - before
            # Per connection: at least a reader and a writer at each end.
            assert len(during) >= 3 * 2 * 2
            tasks.cancel_scope.cancel()  # the server goes: every client connection dies
    assert {task.id for task in anyio.get_running_tasks()} == before


async def hold_open(port: int, name: str) -> None:
    async with pulsewire.anyio.connect("127.0.0.1", port, policy=POLICY, name=name) as connection:
        await connection.wait_dead()


async def test_cancelling_the_serving_scope_closes_every_connection() -> None:
    async with anyio.create_task_group() as clients:
        async with anyio.create_task_group() as server:
            listener = await server.start(pulsewire.anyio.serve, echo_handler, "127.0.0.1", 0)
            with await anyio_enter(clients, listener.port) as opened:
                connection = await opened.receive()
            served = next(iter(listener.connections))
            server.cancel_scope.cancel()
        with anyio.fail_after(5):
            death = await connection.wait_dead()
        clients.cancel_scope.cancel()
    # The server said why on its way out; its own side died of its local close.
    assert (death.reason, death.source) == (Reason.EOF, Source.PEER)
    assert death.close_code == CloseCode.GOING_AWAY
    assert served.death is not None
    assert served.death.reason is Reason.LOCAL_CLOSE


async def anyio_enter(tasks: Any, port: int) -> Any:
    """Open a client connection in ``tasks``; receive it from the returned stream."""
    send, receive = anyio.create_memory_object_stream[Any](1)

    async def run() -> None:
        with send:
            async with pulsewire.anyio.connect("127.0.0.1", port, policy=POLICY) as connection:
                await send.send(connection)
                await connection.wait_dead()

    tasks.start_soon(run)
    return receive


async def test_a_handler_error_is_logged_and_closes_its_connection_only() -> None:
    async def broken(connection: pulsewire.anyio.Connection) -> None:
        if await connection.recv() == b"boom":
            raise RuntimeError("handler bug")
        await connection.send(b"fine")
        await connection.recv()

    async with anyio.create_task_group() as tasks:
        listener = await tasks.start(pulsewire.anyio.serve, broken, "127.0.0.1", 0)
        with structlog.testing.capture_logs() as logs:
            async with pulsewire.anyio.connect("127.0.0.1", listener.port, policy=POLICY) as first:
                await first.send(b"boom")
                with anyio.fail_after(5):
                    death = await first.wait_dead()
        # The task group survived the handler's error: the listener still serves.
        async with pulsewire.anyio.connect("127.0.0.1", listener.port, policy=POLICY) as second:
            await second.send(b"ok?")
            assert await second.recv() == b"fine"
        tasks.cancel_scope.cancel()
    assert (death.reason, death.source, death.close_code) == (
        Reason.EOF,
        Source.PEER,
        CloseCode.INTERNAL_ERROR,
    )
    assert [log["event"] for log in logs if log["log_level"] == "error"] == ["handler.error"]


async def test_an_error_in_the_connect_block_comes_out_as_itself() -> None:
    async with anyio.create_task_group() as tasks:
        listener = await tasks.start(pulsewire.anyio.serve, echo_handler, "127.0.0.1", 0)
        with pytest.raises(KeyError):
            async with pulsewire.anyio.connect("127.0.0.1", listener.port, policy=POLICY):
                raise KeyError("not wrapped in an exception group")
        tasks.cancel_scope.cancel()


async def test_connecting_to_a_closed_port_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(pulsewire.ConnectError, match="could not connect"):
            async with pulsewire.anyio.connect("127.0.0.1", port, policy=POLICY):
                pass


async def test_sending_on_a_dead_connection_raises() -> None:
    ours, theirs = memory_stream_pair()
    async with anyio.create_task_group() as peer:
        peer.start_soon(echo_over, theirs)
        async with pulsewire.anyio.wrap(ours, policy=POLICY) as connection:
            await connection.close()
            with pytest.raises(pulsewire.LocalClosedError):
                await connection.send(b"too late")
            assert [message async for message in connection] == []
        peer.cancel_scope.cancel()


async def test_the_client_reconnects_after_each_death() -> None:
    async def one_message(connection: pulsewire.anyio.Connection) -> None:
        await connection.send(b"bye")  # then the handler returns: closed in order

    async with anyio.create_task_group() as tasks:
        listener = await tasks.start(pulsewire.anyio.serve, one_message, "127.0.0.1", 0)
        backoff = Backoff(initial=0.01, maximum=0.05)
        async with pulsewire.anyio.Client(
            "127.0.0.1", listener.port, policy=POLICY, backoff=backoff
        ) as client:
            seen = []
            async for connection in client:
                assert await connection.recv() == b"bye"
                seen.append(await connection.wait_dead())
                if len(seen) == 2:
                    break
            stats = client.stats()
        tasks.cancel_scope.cancel()
    assert [(death.reason, death.close_code) for death in seen] == [(Reason.EOF, 1000)] * 2
    assert stats.connects >= 2


async def test_a_connections_events_go_to_the_logger_it_was_given(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("app.pulsewire")
    async with anyio.create_task_group() as tasks:
        listener = await tasks.start(pulsewire.anyio.serve, echo_handler, "127.0.0.1", 0)
        with caplog.at_level(logging.INFO):
            async with pulsewire.anyio.connect(
                "127.0.0.1", listener.port, policy=POLICY, logger=logger
            ):
                pass
        tasks.cancel_scope.cancel()
    ours = [
        record.getMessage().split()[0] for record in caplog.records if record.name == logger.name
    ]
    assert ours[:2] == ["peer.connected", "connection.close"]
    assert "peer.dead" in ours
