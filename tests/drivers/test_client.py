"""The reconnecting Client: backoff, reconnection after deaths, TOO_MANY_PINGS back-off, and
when it stops: refusals that retrying cannot fix, max_attempts, retry_if."""

from __future__ import annotations

import asyncio
import socket

import pytest
import structlog

import pulsewire
from pulsewire import logevents

FAST = pulsewire.Backoff(initial=0.02, maximum=0.1)


@pytest.mark.asyncio
async def test_the_client_reconnects_after_each_death_and_counts_them() -> None:
    async def rude(connection: pulsewire.Connection) -> None:
        connection.abort()  # every connection is dropped at once: the client sees RESET/EOF

    async with (
        await pulsewire.serve(rude) as listener,
        pulsewire.Client("127.0.0.1", listener.port, backoff=FAST) as client,
    ):
        seen: list[pulsewire.Connection] = []
        async with asyncio.timeout(10):
            async for connection in client:
                seen.append(connection)
                await connection.wait_dead()
                # The stats are current inside the loop: this death is counted already.
                stats = client.stats()
                assert (stats.connects, sum(stats.deaths.values())) == (len(seen), len(seen))
                if len(seen) == 3:
                    break
        assert len(set(map(id, seen))) == 3


@pytest.mark.asyncio
async def test_the_client_retries_until_the_server_appears() -> None:
    with socket.socket() as probe:  # a port with nothing listening (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def echo(connection: pulsewire.Connection) -> None:
        async for message in connection:
            await connection.send(message)

    failures: list[pulsewire.ConnectError] = []
    failed_twice = asyncio.Event()

    def retry_if(error: pulsewire.ConnectError) -> bool:
        """Called once per failed attempt: the hook tells the test, and keeps retrying."""
        failures.append(error)
        if len(failures) == 2:
            failed_twice.set()
        return pulsewire.Client.retryable(error)

    with structlog.testing.capture_logs() as logs:
        async with pulsewire.Client("127.0.0.1", port, backoff=FAST, retry_if=retry_if) as client:
            async with asyncio.timeout(10):
                await failed_twice.wait()
            assert client.stats().failed_attempts >= 2  # counted before the hook is asked
            assert all(isinstance(e.__cause__, ConnectionRefusedError) for e in failures)
            async with await pulsewire.serve(echo, "127.0.0.1", port):
                async with asyncio.timeout(10):
                    connection = await client.connection()
                await connection.send(b"ping")
                assert await connection.recv() == b"ping"
                assert client.stats().failed_attempts >= 2
    failures = [e for e in logs if e["event"] == logevents.CLIENT_CONNECT_FAILED]
    assert failures
    assert all(0 <= e["retry_in"] <= FAST.maximum for e in failures)


@pytest.mark.asyncio
async def test_told_too_many_pings_the_client_doubles_its_interval_loudly() -> None:
    class Strict(pulsewire.Server):
        """Refuses the first two connections for pinging too often, then accepts."""

        def __init__(self) -> None:
            self.refused = 0
            self.accepted = asyncio.Event()

        async def on_connect(self, connection: pulsewire.Connection) -> None:
            if self.refused < 2:
                self.refused += 1
                await connection.close(pulsewire.CloseCode.TOO_MANY_PINGS, "slow down")
            else:
                self.accepted.set()

    server = Strict()
    policy = pulsewire.Policy(interval=0.5, timeout=3.0)
    with structlog.testing.capture_logs() as logs:
        async with (
            await pulsewire.serve(server) as listener,
            pulsewire.Client("127.0.0.1", listener.port, policy=policy, backoff=FAST) as client,
        ):
            async with asyncio.timeout(10):
                await server.accepted.wait()
            connection = await client.connection()
            assert connection.negotiated is not None
            assert connection.negotiated.ping_interval == 2.0
    assert client.policy.interval == 2.0
    assert client.policy.timeout == 3.0
    backoffs = [e for e in logs if e["event"] == logevents.CLIENT_PING_BACKOFF]
    assert [e["new_interval"] for e in backoffs[:2]] == [1.0, 2.0]
    assert all(e["log_level"] == "error" for e in backoffs)


@pytest.mark.asyncio
async def test_a_client_that_is_not_running_says_so() -> None:
    client = pulsewire.Client("127.0.0.1", 1)
    with pytest.raises(pulsewire.UsageError, match="not running"):
        await client.connection()


# --------------------------------------------------------------------------------------
# When the client stops
# --------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:  # a port that was free a moment ago, and nobody listens on
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("server_policy", "client_policy"),
    [
        # The client cannot meet the server's minimum interval within its own timeout.
        (pulsewire.Policy(min_peer_interval=5.0), pulsewire.Policy()),
        # The server cannot convict in time at the interval the client accepts: it refuses.
        (
            pulsewire.Policy(interval=0.5, timeout=1.0),
            pulsewire.Policy(interval=2.0, timeout=5.0, min_peer_interval=2.0),
        ),
    ],
    ids=["client-refuses", "server-refuses"],
)
async def test_a_policy_it_cannot_meet_stops_the_client_at_once(server_policy, client_policy):
    with structlog.testing.capture_logs() as logs:
        async with await pulsewire.serve(lambda c: c.wait_dead(), policy=server_policy) as server:
            client = pulsewire.Client("127.0.0.1", server.port, policy=client_policy, backoff=FAST)

            async def wait_for_a_connection() -> None:
                async with client:
                    async with asyncio.timeout(10):
                        await client.connection()

            with pytest.raises(pulsewire.HandshakeError) as raised:
                await wait_for_a_connection()
    print(f"\ngave up: {raised.value}")
    assert raised.value.code == pulsewire.CloseCode.POLICY_MISMATCH
    assert client.stats().failed_attempts == 1  # not 31 attempts in 1.5 s
    assert client.stats().connects == 0
    (gave_up,) = [e for e in logs if e["event"] == logevents.CLIENT_GAVE_UP]
    assert gave_up["log_level"] == "error"
    assert [e for e in logs if e["event"] == logevents.CLIENT_CONNECT_FAILED] == []


@pytest.mark.asyncio
async def test_max_attempts_gives_up_from_the_loop_with_the_last_error_as_cause():
    port = _closed_port()
    client = pulsewire.Client("127.0.0.1", port, backoff=FAST, max_attempts=3)

    async def iterate() -> None:
        async with client:
            async with asyncio.timeout(10):
                async for _ in client:
                    raise AssertionError("nothing listens there")

    with pytest.raises(pulsewire.ConnectError) as raised:
        await iterate()
    print(f"\n{raised.value}")
    assert str(raised.value).startswith(
        f"gave up on 127.0.0.1:{port} after 3 failed attempts in a row; the last: "
    )
    cause = raised.value.__cause__
    assert isinstance(cause, pulsewire.ConnectError)
    assert isinstance(cause.__cause__, ConnectionRefusedError)
    assert client.stats().failed_attempts == 3


@pytest.mark.asyncio
async def test_retry_if_decides_and_the_exit_raises_what_the_block_did_not_see():
    asked: list[pulsewire.ConnectError] = []
    gave_up = asyncio.Event()

    def never(error: pulsewire.ConnectError) -> bool:
        asked.append(error)
        gave_up.set()
        return False

    client = pulsewire.Client("127.0.0.1", _closed_port(), backoff=FAST, retry_if=never)

    async def a_block_that_never_asks_for_the_connection() -> None:
        async with client:
            async with asyncio.timeout(10):
                await gave_up.wait()

    with pytest.raises(pulsewire.ConnectError) as raised:
        await a_block_that_never_asks_for_the_connection()
    assert raised.value is asked[0]  # a refusal retry_if would not retry: as it came
    assert client.stats().failed_attempts == 1


@pytest.mark.asyncio
async def test_a_client_reaches_a_unix_socket(tmp_path):
    path = tmp_path / "client.sock"
    if len(str(path)) > 100:
        pytest.skip("the temporary directory's path is too long for a Unix socket")

    async def echo(connection: pulsewire.Connection) -> None:
        async for message in connection:
            await connection.send(message)

    async with (
        await pulsewire.serve_unix(echo, path),
        pulsewire.Client(path=path, backoff=FAST) as client,
    ):
        async with asyncio.timeout(10):
            connection = await client.connection()
            await connection.send(b"local")
            assert await connection.recv() == b"local"
        assert connection.kernel_report is None
        assert client.path == str(path)


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((), {}, pulsewire.UsageError),
        (("127.0.0.1", 1), {"path": "/tmp/x.sock"}, pulsewire.UsageError),
        (("127.0.0.1", -1), {}, ValueError),
        (("127.0.0.1", 1), {"max_attempts": 0}, ValueError),
        (("127.0.0.1", 1), {"server_hostname": "x"}, pulsewire.UsageError),
        ((), {"path": 5}, TypeError),
    ],
    ids=["nowhere", "both", "port", "max-attempts", "hostname-without-tls", "path-type"],
)
def test_bad_client_arguments_are_said_at_construction(args, kwargs, error):
    with pytest.raises(error):
        pulsewire.Client(*args, **kwargs)
