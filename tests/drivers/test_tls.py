"""Heartbeats inside TLS, and TLS failures reported as typed errors that name the cause.

Certificates are made at test time by ``trustme``: a throwaway CA, a server certificate for
``localhost`` and ``127.0.0.1``, client certificates for mutual TLS.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import sys
from collections.abc import Callable

import pytest
import trustme

import pulsewire

POLICY = pulsewire.Policy(interval=0.05, timeout=0.25)
#: Starting a Python process that imports pulsewire takes ~0.3 s; a loaded CI box, more.
STARTUP_TIMEOUT = 15.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def mutual_server_tls(ca: trustme.CA, server_tls: ssl.SSLContext) -> ssl.SSLContext:
    server_tls.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server_tls)
    return server_tls


ClientTls = Callable[..., ssl.SSLContext]


@pytest.fixture
def client_tls(ca: trustme.CA) -> ClientTls:
    """``client_tls(trusted=True, certificate_from=None)``: a client context that trusts our
    CA (or not), presenting a certificate issued by ``certificate_from`` (or none)."""

    def make(*, trusted: bool = True, certificate_from: trustme.CA | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if trusted:
            ca.configure_trust(context)
        if certificate_from is not None:
            certificate_from.issue_cert("client@example.org").configure_cert(context)
        return context

    return make


@pytest.mark.asyncio
async def test_heartbeats_run_inside_tls(server_tls, client_tls, accepting, caplog) -> None:
    listener = await pulsewire.serve(accepting, policy=POLICY, ssl=server_tls)
    async with (
        listener,
        await pulsewire.connect(
            "127.0.0.1", listener.port, policy=POLICY, ssl=client_tls()
        ) as connection,
    ):
        served = await accepting.next()
        tls = connection.get_extra_info("ssl_object")
        assert tls is not None
        print(f"\nTLS: {tls.version()} {tls.cipher()[0]}")
        await connection.send(b"secret")
        async with asyncio.timeout(5):
            assert await served.recv() == b"secret"
        # Idle for twice the timeout: the heartbeats inside TLS keep both ends alive.
        await asyncio.sleep(2 * POLICY.timeout)
        assert connection.state is served.state is pulsewire.State.ALIVE
        assert connection.stats().pongs_received >= 1
        assert connection.rtt is not None
        assert connection.kernel_report is not None  # still a TCP socket underneath
    assert listener.stats().deaths == {"eof": 1}
    # An orderly close inside TLS leaves asyncio nothing to warn about.
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


#: A TLS client in its own process, which the test freezes with SIGSTOP.
TLS_PEER = """
import asyncio, ssl, sys, pulsewire
async def main():
    context = ssl.create_default_context(cafile=sys.argv[2])
    policy = pulsewire.Policy(interval=0.05, timeout=0.25)
    c = await pulsewire.connect("127.0.0.1", int(sys.argv[1]), ssl=context, policy=policy)
    print("READY", flush=True)
    await c.wait_dead()
asyncio.run(main())
"""


@pytest.mark.asyncio
async def test_a_frozen_peer_is_convicted_inside_tls(ca, server_tls, tmp_path) -> None:
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    dead: asyncio.Future[pulsewire.Death] = asyncio.get_running_loop().create_future()

    class Watch(pulsewire.Server):
        async def on_dead(self, connection: pulsewire.Connection, death: pulsewire.Death) -> None:
            dead.set_result(death)

    async with await pulsewire.serve(Watch(), policy=POLICY, ssl=server_tls) as listener:
        peer = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            TLS_PEER,
            str(listener.port),
            str(cafile),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert peer.stdout is not None
            async with asyncio.timeout(STARTUP_TIMEOUT):
                assert await peer.stdout.readline() == b"READY\n"
            os.kill(peer.pid, signal.SIGSTOP)  # its kernel keeps the TCP and TLS state
            frozen_at = asyncio.get_running_loop().time()
            async with asyncio.timeout(POLICY.timeout + 5):
                death = await dead
            waited = asyncio.get_running_loop().time() - frozen_at
        finally:
            os.kill(peer.pid, signal.SIGCONT)
            peer.kill()
            await peer.wait()
    print(f"\nfrozen TLS peer: {death.reason.value} ({death.source.value}) after {waited:.3f} s")
    assert (death.reason, death.source) == (pulsewire.Reason.TIMEOUT, pulsewire.Source.HEARTBEAT)
    assert waited <= POLICY.timeout + 0.5


@pytest.mark.asyncio
async def test_a_hostname_mismatch_is_a_tls_error_that_names_it(server_tls, client_tls) -> None:
    async with await pulsewire.serve(lambda c: c.wait_dead(), ssl=server_tls) as listener:
        with pytest.raises(pulsewire.TLSError) as raised:
            await pulsewire.connect(
                "127.0.0.1", listener.port, ssl=client_tls(), server_hostname="example.org"
            )
    message = str(raised.value)
    print(f"\n{message}")
    assert "certificate verify failed: Hostname mismatch" in message
    assert "'example.org'" in message
    assert "\n" not in message
    assert isinstance(raised.value, pulsewire.ConnectError)
    assert isinstance(raised.value.__cause__, ssl.SSLCertVerificationError)


@pytest.mark.asyncio
async def test_an_untrusted_server_certificate_is_a_tls_error(server_tls, client_tls) -> None:
    async with await pulsewire.serve(lambda c: c.wait_dead(), ssl=server_tls) as listener:
        with pytest.raises(pulsewire.TLSError, match="certificate verify failed: unable to get"):
            await pulsewire.connect("127.0.0.1", listener.port, ssl=client_tls(trusted=False))
        assert listener.stats().accepted == 0  # never got past TLS: not a connection


@pytest.mark.asyncio
async def test_tls_to_a_plain_server_says_it_does_not_speak_tls(client_tls) -> None:
    async with await pulsewire.serve(lambda c: c.wait_dead()) as listener:
        with pytest.raises(pulsewire.TLSError, match="does not speak TLS"):
            await pulsewire.connect("127.0.0.1", listener.port, ssl=client_tls())


@pytest.mark.asyncio
async def test_plain_to_a_tls_server_says_what_may_be_wrong(server_tls) -> None:
    async with await pulsewire.serve(lambda c: c.wait_dead(), ssl=server_tls) as listener:
        with pytest.raises(pulsewire.ConnectError, match="does it expect TLS") as raised:
            await pulsewire.connect("127.0.0.1", listener.port)
    assert not isinstance(raised.value, pulsewire.HandshakeError | pulsewire.TLSError)


@pytest.mark.asyncio
async def test_mutual_tls_refuses_a_client_without_a_certificate(
    ca, mutual_server_tls, client_tls, accepting
) -> None:
    async with await pulsewire.serve(accepting, ssl=mutual_server_tls) as listener:
        with pytest.raises(pulsewire.TLSError, match="refused our client certificate") as raised:
            await pulsewire.connect("127.0.0.1", listener.port, ssl=client_tls())
        print(f"\nno client certificate: {raised.value}")
        with pytest.raises(pulsewire.TLSError, match="refused our client certificate"):
            await pulsewire.connect(
                "127.0.0.1", listener.port, ssl=client_tls(certificate_from=trustme.CA())
            )
        # With a certificate from the CA the server trusts, it is a connection.
        async with await pulsewire.connect(
            "127.0.0.1", listener.port, ssl=client_tls(certificate_from=ca)
        ) as connection:
            served = await accepting.next()
            peer = served.get_extra_info("peercert")
            assert ("email", "client@example.org") in peer["subjectAltName"]
            await connection.send(b"mutual")
            async with asyncio.timeout(5):
                assert await served.recv() == b"mutual"
        assert listener.stats().accepted == 1


@pytest.mark.asyncio
async def test_tls_over_a_unix_socket(server_tls, client_tls, accepting, tmp_path) -> None:
    path = tmp_path / "tls.sock"
    if len(str(path)) > 100:
        pytest.skip("the temporary directory's path is too long for a Unix socket")
    with pytest.raises(pulsewire.UsageError, match="server_hostname"):
        await pulsewire.connect_unix(path, ssl=client_tls())
    async with (
        await pulsewire.serve_unix(accepting, path, ssl=server_tls),
        await pulsewire.connect_unix(
            path, ssl=client_tls(), server_hostname="localhost"
        ) as connection,
    ):
        served = await accepting.next()
        await connection.send(b"local and private")
        async with asyncio.timeout(5):
            assert await served.recv() == b"local and private"
        assert connection.get_extra_info("ssl_object") is not None


@pytest.mark.asyncio
async def test_a_client_gives_up_on_a_certificate_error(server_tls, client_tls) -> None:
    async with await pulsewire.serve(lambda c: c.wait_dead(), ssl=server_tls) as listener:
        client = pulsewire.Client(
            "127.0.0.1",
            listener.port,
            ssl=client_tls(),
            server_hostname="example.org",
            backoff=pulsewire.Backoff(initial=0.01, maximum=0.05),
        )

        async def wait_for_a_connection() -> None:
            async with client:
                async with asyncio.timeout(10):
                    await client.connection()

        with pytest.raises(pulsewire.TLSError, match="Hostname mismatch"):
            await wait_for_a_connection()
    assert client.stats().failed_attempts == 1  # retrying cannot fix a certificate
