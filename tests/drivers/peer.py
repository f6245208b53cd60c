"""A pulsewire peer to run as a subprocess in the driver tests (signal it by its PID).

Modes (every policy value comes from a flag; see ``--help``)::

    peer.py server [--sink] [--plain]   serve on 127.0.0.1 port 0, print "READY <port> [<plain>]"
    peer.py client --port P             connect, print "READY <local port>", echo every message
    peer.py raw-rst --port P            handshake on a raw socket, print "READY"; on a stdin
                                        line or SIGUSR1: SO_LINGER (1, 0) and close -> RST
                                        (--unread: first wait for unread bytes, which is
                                        what makes a Unix socket's close reset the other end)
    peer.py silent-reader --port P      handshake on a raw socket, print "READY", then never
                                        read or write again
    peer.py slow-sink --read-rate R     serve one connection on a raw socket, port 0, print
                                        "READY <port>"; read at most R bytes/s, answer PINGs

``server`` echoes each message back; with ``--sink`` it only receives and prints
``RECEIVED <length> <sha256>`` per message, as ``slow-sink`` does; with ``--numbered`` it
only receives, and writes ``GOT <n>`` for each message (``n``: its first 8 bytes, big
endian) straight to the stdout pipe as its application takes it, before anything else can
run: a SIGKILL never loses a line for a message it took. With ``--plain`` it also
listens on a second, plain TCP port and holds every connection accepted there (for
comparison with kernel keepalive). ``client`` closes in order on a stdin line ``close``
and prints ``DEAD <reason>`` when its connection dies, or ``REFUSED <close code>`` when
the handshake fails. Every line on stdout is flushed at once; logs go to stderr.

Transports (for the conformance suite): ``--unix PATH`` listens on / connects to a Unix
socket instead of TCP (``server`` prints ``READY 0``); ``--tls DIR`` speaks TLS with the
``server.pem`` (certificate and key) and ``ca.pem`` found in DIR. ``--driver anyio`` runs
``server`` and ``client`` on ``pulsewire.anyio`` (asyncio backend) instead of the asyncio
driver; ``--unix`` always does (the peer's driver is not what a test watches).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import select
import signal
import socket
import ssl
import struct
import sys
import time
from pathlib import Path

import anyio

import pulsewire
from pulsewire.core import Limits, MessageReceived, Policy, Reason, Session


def say(line: str) -> None:
    print(line, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "mode", choices=["server", "client", "raw-rst", "silent-reader", "slow-sink"]
    )
    parser.add_argument("--port", type=int, default=0, help="the server to connect to")
    parser.add_argument("--sink", action="store_true", help="server: receive only, no echo")
    parser.add_argument("--numbered", action="store_true", help="server: write GOT <n>")
    parser.add_argument("--plain", action="store_true", help="server: also hold plain TCP")
    parser.add_argument("--rcvbuf", type=int, default=0, help="servers: SO_RCVBUF to accept with")
    parser.add_argument("--read-rate", type=float, default=20e6, help="slow-sink: bytes/s")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--suspect-after", type=float, default=None)
    parser.add_argument("--min-peer-interval", type=float, default=0.05)
    parser.add_argument("--jitter", type=float, default=0.25)
    parser.add_argument("--handshake-timeout", type=float, default=10.0)
    parser.add_argument("--max-message-size", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--name", default="peer")
    parser.add_argument("--unix", default=None, help="a Unix socket path instead of TCP")
    parser.add_argument("--tls", default=None, help="directory with server.pem and ca.pem")
    parser.add_argument("--driver", choices=["asyncio", "anyio"], default="asyncio")
    parser.add_argument("--unread", action="store_true", help="raw-rst: reset over unread bytes")
    args = parser.parse_args(argv)
    if args.unix:
        args.driver = "anyio"
    return args


def tls_context(args: argparse.Namespace, server: bool) -> ssl.SSLContext | None:
    """The TLS context ``--tls`` asks for (None: plain)."""
    if args.tls is None:
        return None
    directory = Path(args.tls)
    if server:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(directory / "server.pem")
    else:
        context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    return context


def policy_of(args: argparse.Namespace) -> Policy:
    return Policy(
        interval=args.interval,
        timeout=args.timeout,
        suspect_after=args.suspect_after,
        min_peer_interval=args.min_peer_interval,
        jitter=args.jitter,
        handshake_timeout=args.handshake_timeout,
    )


def limits_of(args: argparse.Namespace) -> Limits:
    return Limits(max_message_size=args.max_message_size)


# ---------------------------------------------------------------------- pulsewire modes


def received(message: bytes) -> None:
    say(f"RECEIVED {len(message)} {hashlib.sha256(message).hexdigest()}")


async def run_anyio_server(args: argparse.Namespace) -> None:
    import pulsewire.anyio

    async def echo(connection: pulsewire.anyio.Connection) -> None:
        async for message in connection:
            await connection.send(message)

    async def sink(connection: pulsewire.anyio.Connection) -> None:
        async for message in connection:
            received(message)

    options = {"policy": policy_of(args), "limits": limits_of(args), "name": args.name}
    async with anyio.create_task_group() as tasks:
        if args.unix:
            await tasks.start(
                lambda task_status: pulsewire.anyio.serve_unix(
                    sink if args.sink else echo, args.unix, task_status=task_status, **options
                )
            )
            say("READY 0")
        else:
            listener = await tasks.start(
                lambda task_status: pulsewire.anyio.serve(
                    sink if args.sink else echo,
                    "127.0.0.1",
                    0,
                    ssl_context=tls_context(args, server=True),
                    task_status=task_status,
                    **options,
                )
            )
            say(f"READY {listener.port}")


async def run_anyio_client(args: argparse.Namespace) -> None:
    import pulsewire.anyio

    options = {"policy": policy_of(args), "limits": limits_of(args), "name": args.name}
    try:
        if args.unix:
            opened = pulsewire.anyio.connect_unix(args.unix, **options)
        else:
            context = tls_context(args, server=False)
            opened = pulsewire.anyio.connect(
                "127.0.0.1", args.port, ssl_context=context, tls_hostname="localhost", **options
            )
        async with opened as connection:
            say("READY 0")

            async def echo() -> None:
                with contextlib.suppress(pulsewire.ConnectionClosedError):
                    async for message in connection:
                        await connection.send(message)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(echo)
                death = await connection.wait_dead()
                say(f"DEAD {death.reason.value}")
    except pulsewire.HandshakeError as error:
        say(f"REFUSED {error.code}")


async def run_server(args: argparse.Namespace) -> None:
    held: list[asyncio.StreamWriter] = []

    async def echo(connection: pulsewire.Connection) -> None:
        async for message in connection:
            await connection.send(message)

    async def sink(connection: pulsewire.Connection) -> None:
        async for message in connection:
            received(message)

    async def numbered(connection: pulsewire.Connection) -> None:
        with contextlib.suppress(pulsewire.ConnectionClosedError):
            async for message in connection:
                os.write(1, b"GOT %d\n" % int.from_bytes(message[:8], "big"))

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep it open; the test only watches the kernel's side of it
        await reader.read()

    listener = await pulsewire.serve(
        numbered if args.numbered else sink if args.sink else echo,
        "127.0.0.1",
        0,
        policy=policy_of(args),
        limits=limits_of(args),
        ssl=tls_context(args, server=True),
        name=args.name,
    )
    if args.rcvbuf:
        for sock in listener.sockets:  # accepted sockets inherit it (and lose autotuning)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    ready = f"READY {listener.port}"
    if args.plain:
        plain = await asyncio.start_server(hold, "127.0.0.1", 0)
        ready += f" {plain.sockets[0].getsockname()[1]}"
    say(ready)
    async with listener:
        await listener.serve_forever()


async def run_client(args: argparse.Namespace) -> None:
    try:
        connection = await pulsewire.connect(
            "127.0.0.1",
            args.port,
            policy=policy_of(args),
            limits=limits_of(args),
            ssl=tls_context(args, server=False),
            server_hostname="localhost" if args.tls else None,
            name=args.name,
        )
    except pulsewire.HandshakeError as error:
        say(f"REFUSED {error.code}")
        return
    say(f"READY {connection.get_extra_info('sockname')[1]}")

    async def echo() -> None:
        with contextlib.suppress(pulsewire.ConnectionClosedError):
            async for message in connection:
                await connection.send(message)

    async def commands() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            if line.strip() == b"close":
                await connection.close()

    echo_task = asyncio.create_task(echo())
    command_task = asyncio.create_task(commands())
    death = await connection.wait_dead()
    say(f"DEAD {death.reason.value}")
    command_task.cancel()
    await echo_task


# ---------------------------------------------------------------------- raw-socket modes


def raw_handshake(args: argparse.Namespace) -> socket.socket:
    """Connect and exchange HELLOs, using the sans-I/O session only to make and parse bytes."""
    session = Session(policy_of(args), limits_of(args), now=time.monotonic(), name=args.name)
    sock: socket.socket
    if args.unix:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(args.unix)
    else:
        sock = socket.create_connection(("127.0.0.1", args.port))
        context = tls_context(args, server=False)
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="localhost")
    sock.sendall(session.data_to_send())  # preamble + HELLO
    while session.negotiated is None:
        data = sock.recv(65536)
        if not data:
            raise SystemExit("the server closed during the handshake")
        session.receive_data(data, time.monotonic())
    return sock


def _interrupt(signum: int, frame: object) -> None:
    raise InterruptedError  # raised, so that readline() is not silently retried (PEP 475)


def run_raw_rst(args: argparse.Namespace) -> None:
    sock = raw_handshake(args)
    signal.signal(signal.SIGUSR1, _interrupt)  # the signal, like a stdin line, ends the wait
    say("READY")
    with contextlib.suppress(InterruptedError):
        sys.stdin.readline()
    if args.unread:
        select.select([sock], [], [], 10.0)  # bytes are waiting, never to be read
    # Linger on, timeout 0: close() discards the buffers and sends RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    say("RST")


def run_silent_reader(args: argparse.Namespace) -> None:
    sock = raw_handshake(args)
    say("READY")
    sys.stdin.readline()  # hold the socket, never read it, never answer, until stdin ends
    sock.close()


def run_slow_sink(args: argparse.Namespace) -> None:
    """A pulsewire peer that reads slowly: the sans-I/O session on a throttled blocking socket.

    The throttle is on the socket, below pulsewire: the kernel buffers stay full, and every
    PING waits behind whatever DATA was sent before it, exactly as it would on a slow link.
    """
    listening = socket.socket()
    if args.rcvbuf:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    listening.bind(("127.0.0.1", 0))
    listening.listen(1)
    say(f"READY {listening.getsockname()[1]}")
    sock, _ = listening.accept()
    listening.close()
    session = Session(policy_of(args), limits_of(args), now=time.monotonic(), name=args.name)
    sock.sendall(session.data_to_send())
    started: float | None = None  # the throttle starts with the first bytes
    total = 0
    while session.death is None:
        try:
            data = sock.recv(16 * 1024)
        except OSError as error:
            session.connection_lost(Reason.RESET, time.monotonic(), error=error)
            break
        now = time.monotonic()
        if data:
            session.receive_data(data, now)
        else:
            session.receive_eof(now)
        deadline = session.next_deadline()
        if deadline is not None and now >= deadline:
            session.handle_timer(now)
        for event in session.events_received():
            if isinstance(event, MessageReceived):
                received(event.data)
                session.message_consumed(len(event.data))
        with contextlib.suppress(OSError):
            sock.sendall(session.data_to_send())
        if started is None:
            started = now
        total += len(data)
        ahead = started + total / args.read_rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)  # the throttle
    sock.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # The application configures logging, not the library: keep stdout for protocol lines.
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    if args.mode == "server":
        anyio.run(run_anyio_server if args.driver == "anyio" else run_server, args)
    elif args.mode == "client":
        anyio.run(run_anyio_client if args.driver == "anyio" else run_client, args)
    elif args.mode == "raw-rst":
        run_raw_rst(args)
    elif args.mode == "silent-reader":
        run_silent_reader(args)
    else:
        run_slow_sink(args)


if __name__ == "__main__":
    main()
