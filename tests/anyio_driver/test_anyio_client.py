"""The anyio Client's arguments and classification: what the conformance suite does not
run (its behaviour is there, on both drivers: tests/conformance/test_client_stops.py)."""

from __future__ import annotations

import ssl

import pytest

import pulsewire
import pulsewire.anyio
from pulsewire import CloseCode


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        (("127.0.0.1",), {}),
        (("127.0.0.1", 1), {"path": "/tmp/x.sock"}),
        ((), {"path": "/tmp/x.sock", "ssl_context": ssl.create_default_context()}),
        (("127.0.0.1", 1), {"tls_hostname": "x"}),
    ],
    ids=["nowhere", "no-port", "both", "unix-tls", "hostname-without-tls"],
)
def test_arguments_that_do_not_go_together_are_said_at_construction(args, kwargs) -> None:
    with pytest.raises(pulsewire.UsageError):
        pulsewire.anyio.Client(*args, **kwargs)


@pytest.mark.parametrize("max_attempts", [0, -1, True, 2.0])
def test_max_attempts_must_be_a_positive_int(max_attempts) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        pulsewire.anyio.Client("127.0.0.1", 1, max_attempts=max_attempts)


def test_the_client_takes_the_same_defaults_as_the_asyncio_one() -> None:
    client = pulsewire.anyio.Client(path="/tmp/x.sock")
    assert (client.host, client.port, client.path) == (None, None, "/tmp/x.sock")
    assert client.retry_if is pulsewire.anyio.Client.retryable
    assert client.max_attempts is None
    assert (client.limits, client.socket_options) == (pulsewire.Limits(), pulsewire.SocketOptions())


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (pulsewire.ConnectError("refused"), True),
        (pulsewire.HandshakeError("going away", CloseCode.GOING_AWAY), True),
        (pulsewire.HandshakeError("no HELLO", CloseCode.HANDSHAKE_TIMEOUT), True),
        (pulsewire.HandshakeError("mismatch", CloseCode.POLICY_MISMATCH), False),
        (pulsewire.HandshakeError("version", CloseCode.UNSUPPORTED_VERSION), False),
        (pulsewire.HandshakeError("application", 4001), False),
        (pulsewire.TLSError("certificate verify failed"), False),
    ],
)
def test_both_clients_classify_refusals_alike(error, retryable) -> None:
    assert pulsewire.anyio.Client.retryable(error) is retryable
    assert pulsewire.Client.retryable(error) is retryable


@pytest.mark.anyio
async def test_a_client_that_is_not_running_says_so() -> None:
    client = pulsewire.anyio.Client("127.0.0.1", 1)
    with pytest.raises(pulsewire.UsageError, match="not running"):
        await client.connection()
