"""Connecting: ``connect()`` and ``connect_unix()`` for one connection, ``Client`` to keep
one alive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import ssl as _ssl
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import final

from pulsewire._log import LoggerLike, event_logger, get_logger
from pulsewire.asyncio.arguments import (
    check_host,
    check_path,
    check_port,
    check_settings,
    check_socket,
    check_tls,
)
from pulsewire.asyncio.connection import Connection
from pulsewire.asyncio.opening import OpenTransport, open_connection
from pulsewire.asyncio.protocol import PulsewireProtocol, format_address
from pulsewire.core.backoff import Backoff
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Limits, Policy
from pulsewire.driverkit.connecting import (
    ClientRecord,
    ClientStats,
    RetryIf,
    check_max_attempts,
    policy_after_death,
    retryable,
)
from pulsewire.errors import ConnectError, UsageError

__all__ = ["Client", "ClientStats", "connect", "connect_unix"]

_log = get_logger()


def _tcp(
    host: str, port: int, ssl: _ssl.SSLContext | None, server_hostname: str | None
) -> OpenTransport:
    async def open_transport(factory: Callable[[], PulsewireProtocol]) -> object:
        loop = asyncio.get_running_loop()
        return await loop.create_connection(
            factory, host, port, ssl=ssl, server_hostname=server_hostname
        )

    return open_transport


def _over_socket(
    sock: socket.socket, ssl: _ssl.SSLContext | None, server_hostname: str | None
) -> OpenTransport:
    async def open_transport(factory: Callable[[], PulsewireProtocol]) -> object:
        loop = asyncio.get_running_loop()
        return await loop.create_connection(
            factory, sock=sock, ssl=ssl, server_hostname=server_hostname
        )

    return open_transport


def _unix(path: str, ssl: _ssl.SSLContext | None, server_hostname: str | None) -> OpenTransport:
    async def open_transport(factory: Callable[[], PulsewireProtocol]) -> object:
        loop = asyncio.get_running_loop()
        return await loop.create_unix_connection(
            factory, path, ssl=ssl, server_hostname=server_hostname
        )

    return open_transport


async def connect(
    host: str | None = None,
    port: int | None = None,
    *,
    sock: socket.socket | None = None,
    policy: Policy | None = None,
    limits: Limits | None = None,
    socket_options: SocketOptions | None = None,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    name: str = "",
    logger: LoggerLike | None = None,
) -> Connection:
    """Open a TCP connection, run the handshake, and return the live ``Connection``.

    Either ``host`` and ``port``, or ``sock``: a TCP socket the caller already connected
    (``asyncio.open_connection``'s ``sock=``; pulsewire owns it from then on). For a Unix
    socket, see :func:`connect_unix`; to take over streams another library opened, see
    :func:`wrap_streams`.

    ``ssl``: an ``ssl.SSLContext`` for TLS (the certificate must match ``host``, or
    ``server_hostname`` when given; with ``sock=`` it is required). ``socket_options`` are
    set on the socket (default :class:`~pulsewire.SocketOptions`). ``logger``: where this
    connection's log events go (a ``logging.Logger``, a ``LoggerAdapter`` whose ``extra``
    joins every event, or a structlog logger; default: the ``logging`` logger
    ``pulsewire``).

    Connecting (TCP and TLS) must succeed within ``policy.handshake_timeout``, and the
    pulsewire handshake must then complete within ``policy.handshake_timeout`` too.

    Raises (and nothing else, but ``asyncio.CancelledError``):

    - ``TypeError``, ``ValueError``, :class:`~pulsewire.UsageError`: a bad argument, or
      arguments that do not go together; raised before any I/O.
    - :class:`~pulsewire.HandshakeError`: the peer is not a compatible pulsewire peer:
      wrong protocol or version, incompatible policies, it closed during the handshake
      (``code`` is its close code), or it accepted the connection but sent no pulsewire
      greeting within ``policy.handshake_timeout``.
    - :class:`~pulsewire.TLSError`: TLS failed; the message names the cause (a certificate
      refused by either side, no common TLS version).
    - :class:`~pulsewire.ConnectError` (the base of both): refused, unreachable, name not
      resolved, no connection within ``policy.handshake_timeout``, or the peer vanished
      during the handshake; the ``OSError`` behind it is the ``__cause__``.
    """
    check_tls(ssl, server_hostname, needs_hostname=sock is not None)
    if sock is not None:
        if host is not None or port is not None:
            raise UsageError("connect() takes host and port, or sock=, not both")
        check_socket(sock, connected=True)
        where = format_address(sock.getpeername())
        open_transport = _over_socket(sock, ssl, server_hostname)
    else:
        if host is None or port is None:
            raise UsageError("connect() needs host and port (or sock=)")
        where = f"{check_host(host)}:{check_port(port)}"
        open_transport = _tcp(host, port, ssl, server_hostname)
    return await open_connection(
        open_transport,
        where,
        policy=policy if policy is not None else Policy(),
        limits=limits if limits is not None else Limits(),
        socket_options=socket_options if socket_options is not None else SocketOptions(),
        name=name,
        initiator=True,
        log=event_logger(logger, _log),
    )


async def connect_unix(
    path: str | os.PathLike[str],
    *,
    policy: Policy | None = None,
    limits: Limits | None = None,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    name: str = "",
    logger: LoggerLike | None = None,
) -> Connection:
    """Connect to a pulsewire server on the Unix socket ``path``, like
    ``asyncio.open_unix_connection``; return the live ``Connection``.

    Unix sockets have no TCP options: nothing is set on the socket, and
    ``Connection.kernel_report`` stays ``None``. TLS works too (``ssl=`` then needs
    ``server_hostname=``). Otherwise as :func:`connect`, and it raises the same errors.
    """
    check_tls(ssl, server_hostname, needs_hostname=True)
    path = check_path(path)
    return await open_connection(
        _unix(path, ssl, server_hostname),
        format_address(path),
        policy=policy if policy is not None else Policy(),
        limits=limits if limits is not None else Limits(),
        socket_options=SocketOptions(),
        name=name,
        initiator=True,
        log=event_logger(logger, _log),
    )


@final
class Client:
    """Keeps one pulsewire connection alive, reconnecting after each death.

    It connects to ``host:port`` (like :func:`connect`), or to the Unix socket ``path=``
    (like :func:`connect_unix`). Attempts are spaced by ``backoff`` (exponential with full
    jitter; reset after each successful handshake). Each death and each reconnect is
    logged (``client.*`` events) and counted in :meth:`stats`. A peer that closes with
    TOO_MANY_PINGS makes the client double its ping interval for every later connection,
    and say so loudly.

    Use it as an async context manager; ``async for connection in client`` yields each new
    live connection, and :meth:`connection` waits for the current one::

        async with pulsewire.Client("db.internal", 7000, policy=pulsewire.Policy.wan()) as client:
            async for connection in client:
                async for message in connection:
                    ...

    When it stops. A failed attempt is retried if ``retry_if(error)`` says so (default:
    :meth:`retryable`, which gives up on refusals that retrying cannot fix: a protocol
    version or policy mismatch, a refusal close code, a TLS or certificate error). With
    ``max_attempts``, it also gives up after that many failed attempts in a row, with a
    :class:`~pulsewire.ConnectError` whose ``__cause__`` is the last attempt's error. Once
    it has given up, the error is raised from ``async for``, from :meth:`connection`, and,
    if the block has not seen it already, from the ``async with`` on exit. ``retry_if`` is
    called once per failed attempt, after :meth:`stats` has counted it.

    ``policy``, ``limits``, ``socket_options``, ``ssl``, ``server_hostname``, ``name`` and
    ``logger`` are used for every connection, as by :func:`connect`; ``rng`` draws the
    backoff's jitter (pass a seeded one for repeatable runs). Bad arguments raise at once,
    as in :func:`connect`.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        policy: Policy | None = None,
        limits: Limits | None = None,
        socket_options: SocketOptions | None = None,
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        name: str = "",
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        retry_if: RetryIf | None = None,
        logger: LoggerLike | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if path is not None:
            if host is not None or port is not None:
                raise UsageError("Client() takes host and port, or path=, not both")
            check_tls(ssl, server_hostname, needs_hostname=True)
            #: The server's Unix socket path (None for TCP).
            self.path: str | None = check_path(path)
            self._where = format_address(self.path)
            self._open: OpenTransport = _unix(self.path, ssl, server_hostname)
        else:
            if host is None or port is None:
                raise UsageError("Client() needs host and port (or path=)")
            check_tls(ssl, server_hostname, needs_hostname=False)
            self.path = None
            self._where = f"{check_host(host)}:{check_port(port)}"
            self._open = _tcp(host, port, ssl, server_hostname)
        max_attempts = check_max_attempts(max_attempts)
        #: The server's host name or address (None for a Unix socket).
        self.host = host
        #: The server's port.
        self.port = port
        #: The policy of the next connection (its interval doubles after TOO_MANY_PINGS).
        self.policy = policy if policy is not None else Policy()
        #: The limits of every connection.
        self.limits = limits if limits is not None else Limits()
        #: The socket options of every connection.
        self.socket_options = socket_options if socket_options is not None else SocketOptions()
        check_settings(self.policy, self.limits, self.socket_options, name)
        #: The TLS context of every connection (None: plain TCP).
        self.ssl = ssl
        #: The name TLS checks the server's certificate against (None: the host).
        self.server_hostname = server_hostname
        #: The name it sends in its HELLOs.
        self.name = name
        #: How long it waits between failed attempts.
        self.backoff = backoff if backoff is not None else Backoff()
        #: Consecutive failed attempts before it gives up (None: never).
        self.max_attempts = max_attempts
        #: Whether a failed attempt is worth retrying (default: :meth:`retryable`).
        self.retry_if = retry_if if retry_if is not None else Client.retryable
        self._log = event_logger(logger, _log)
        self._record = ClientRecord(
            self._where, self._log, rng if rng is not None else random.Random()
        )
        self._current: Connection | None = None
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # ------------------------------------------------------------------ public

    @staticmethod
    def retryable(error: ConnectError) -> bool:
        """The default ``retry_if``: False for refusals that retrying cannot fix.

        Those are a :class:`~pulsewire.TLSError` (a certificate refused by either side, no
        common TLS version), and a :class:`~pulsewire.HandshakeError` whose code is a
        refusal: PROTOCOL_ERROR, UNSUPPORTED_VERSION (not a pulsewire peer, or another
        protocol version), POLICY_MISMATCH, TOO_LARGE, or an application's 4000-4999. Every
        other failure (refused, unreachable, timed out, a peer that closed with GOING_AWAY
        or never answered the handshake) may pass: True.
        """
        return retryable(error)

    def stats(self) -> ClientStats:
        """A frozen snapshot: handshakes, failed attempts, deaths by reason, the policy."""
        return self._record.stats(self.policy)

    async def connection(self) -> Connection:
        """The current live connection, waiting for one if there is none.

        Raises the error the client gave up with (see the class documentation).
        """
        async with self._changed:
            while not self._usable(self._current):
                self._check_running()
                await self._changed.wait()
            assert self._current is not None
            return self._current

    async def __aiter__(self) -> AsyncIterator[Connection]:
        """``async for connection in client``: each new live connection, as it is
        established (after each death, the next one). Runs until the client is closed;
        raises the error the client gave up with, or ``UsageError`` if it is not running."""
        seen: Connection | None = None
        while True:
            async with self._changed:
                while self._current is seen or not self._usable(self._current):
                    self._check_running()
                    await self._changed.wait()
                seen = self._current
            assert seen is not None
            yield seen

    async def start(self) -> None:
        """Start connecting in the background (``async with`` calls it). Idempotent."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop reconnecting and close the current connection in order (raising, as
        :meth:`Connection.close` does, if messages sent on it were not delivered)."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        current = self._current
        try:
            if current is not None and current.death is None:
                await current.close()
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
        if exc is None:
            self._record.raise_if_unseen()

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _usable(connection: Connection | None) -> bool:
        return connection is not None and connection.death is None

    def _check_running(self) -> None:
        self._record.raise_if_gave_up()
        if self._closing or self._task is None:
            raise UsageError("the client is not running: use it as an async context manager")

    async def _run(self) -> None:
        try:
            await self._keep_connected()
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # gave up, or retry_if raised: the user hears of it
            self._record.gave_up(error)
            async with self._changed:
                self._changed.notify_all()

    async def _keep_connected(self) -> None:
        record = self._record
        while not self._closing:
            try:
                connection = await open_connection(
                    self._open,
                    self._where,
                    policy=self.policy,
                    limits=self.limits,
                    socket_options=self.socket_options,
                    name=self.name,
                    initiator=True,
                    log=self._log,
                    observer=record,
                )
            except ConnectError as error:
                delay = record.attempt_failed(
                    error,
                    retry_if=self.retry_if,
                    max_attempts=self.max_attempts,
                    backoff=self.backoff,
                )
                await asyncio.sleep(delay)
                continue
            record.connected()
            async with self._changed:
                self._current = connection
                self._changed.notify_all()
            death = await connection.wait_dead()
            async with self._changed:
                self._changed.notify_all()
            self.policy = policy_after_death(self.policy, death, self._where, self._log)
            if not self._closing:
                await asyncio.sleep(record.delay_after_death(self.backoff))
