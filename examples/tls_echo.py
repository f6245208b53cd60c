"""A TLS echo pair in one program: heartbeats inside TLS, optionally with client certificates.

Run:  python examples/tls_echo.py [--mutual]
      python examples/tls_echo.py --ca CA.pem --server-cert SERVER.pem [--client-cert CLIENT.pem]

Without paths, the certificates are made in memory by ``trustme`` (``pip install trustme``):
a throwaway CA, a server certificate for ``localhost``/``127.0.0.1`` and, with
``--mutual``, a client certificate. With paths, each ``*.pem`` holds a private key and its
certificate chain; ``--client-cert`` makes the server require one.

The server echoes; the client sends three messages over TLS, lets a few heartbeats pass,
prints what TLS and pulsewire agreed on, and closes in order.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from pathlib import Path
from typing import Any

import pulsewire

POLICY = pulsewire.Policy(interval=0.2, timeout=1.0)


def contexts(args: argparse.Namespace) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The server's and the client's TLS contexts, from files or from a trustme CA."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if args.ca is None:
        import trustme

        ca = trustme.CA()
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(server)
        ca.configure_trust(client)
        if args.mutual:
            server.verify_mode = ssl.CERT_REQUIRED
            ca.configure_trust(server)
            ca.issue_cert("echo-client@example.org").configure_cert(client)
        return server, client
    server.load_cert_chain(args.server_cert)
    client.load_verify_locations(args.ca)
    if args.client_cert is not None:
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_verify_locations(args.ca)
        client.load_cert_chain(args.client_cert)
    return server, client


def names(certificate: dict[str, Any] | None) -> str:
    """The names a peer certificate is for (its subjectAltName), or ``none``."""
    alt_names = (certificate or {}).get("subjectAltName", ())
    return ", ".join(str(value) for _, value in alt_names) or "none"


async def echo(connection: pulsewire.Connection) -> None:
    peer = names(connection.get_extra_info("peercert"))
    print(f"server: client certificate: {peer}", flush=True)
    async for message in connection:
        await connection.send(message)


async def main(args: argparse.Namespace) -> int:
    server_tls, client_tls = contexts(args)
    async with await pulsewire.serve(echo, "127.0.0.1", 0, policy=POLICY, ssl=server_tls) as server:
        print(f"server: listening on 127.0.0.1:{server.port} (TLS)", flush=True)
        try:
            connection = await pulsewire.connect(
                "127.0.0.1", server.port, policy=POLICY, ssl=client_tls
            )
        except pulsewire.ConnectError as error:  # a TLSError names the cause
            print(f"client: {type(error).__name__}: {error}", flush=True)
            return 1
        async with connection:  # closed in order at the end of the block
            tls = connection.get_extra_info("ssl_object")
            server_names = names(tls.getpeercert())
            print(f"client: {tls.version()}, server certificate for {server_names}", flush=True)
            for number in range(3):
                await connection.send(f"hello {number}".encode())
                print(f"echo: {(await connection.recv()).decode()}", flush=True)
            await asyncio.sleep(3 * POLICY.interval)  # idle: only heartbeats cross now
            stats = connection.stats()
            print(
                f"client: {stats.pings_sent} pings, {stats.pongs_received} pongs inside TLS, "
                f"state {connection.state.value}",
                flush=True,
            )
        death = await connection.wait_dead()
        print(f"client: closed ({death.reason.value}, clean: {death.clean})", flush=True)
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutual", action="store_true", help="require a client certificate")
    parser.add_argument("--ca", type=Path, help="the CA that signed the certificates (PEM)")
    parser.add_argument("--server-cert", type=Path, help="server key and certificate (PEM)")
    parser.add_argument("--client-cert", type=Path, help="client key and certificate (PEM)")
    args = parser.parse_args(argv)
    if (args.ca is None) != (args.server_cert is None):
        parser.error("--ca and --server-cert go together")
    if args.client_cert is not None and args.ca is None:
        parser.error("--client-cert needs --ca and --server-cert")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args(sys.argv[1:]))))
