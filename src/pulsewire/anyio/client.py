"""Connecting over anyio: ``connect()``, ``connect_unix()``, ``wrap()`` and ``Client``.

A connection's tasks need a task group, so each of these is an async context manager
that owns one: the connection lives inside the ``async with`` block and is closed in
order when the block ends (cancelled, it says CLOSE GOING_AWAY, best effort, and is
dropped). An exception raised in the block comes out of it as itself, not wrapped in an
exception group.
"""

from __future__ import annotations

import functools
import os
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import final

import anyio
from anyio.abc import ByteStream, TaskGroup
from anyio.streams.tls import TLSAttribute

from pulsewire._log import LoggerLike, event_logger, get_logger
from pulsewire.anyio.connection import Connection, ConnectionObserver
from pulsewire.anyio.driver import StreamDriver
from pulsewire.core.backoff import Backoff
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Limits, Policy
from pulsewire.core.states import State
from pulsewire.driverkit.connecting import (
    ClientRecord,
    ClientStats,
    RetryIf,
    check_max_attempts,
    handshake_failure,
    policy_after_death,
    retryable,
    tls_failure,
)
from pulsewire.errors import ConnectError, ConnectionClosedError, UsageError

__all__ = ["Client", "connect", "connect_unix", "wrap"]

_log = get_logger()

#: Opens a connection's stream within a number of seconds, or raises ``ConnectError``.
_OpenStream = Callable[[float], Awaitable[ByteStream]]


@asynccontextmanager
async def connect(
    host: str,
    port: int,
    *,
    policy: Policy | None = None,
    limits: Limits | None = None,
    socket_options: SocketOptions | None = None,
    ssl_context: ssl.SSLContext | None = None,
    tls_hostname: str | None = None,
    name: str = "",
    logger: LoggerLike | None = None,
) -> AsyncIterator[Connection]:
    """Open a TCP connection (TLS with ``ssl_context``), run the handshake, yield it::

        async with pulsewire.anyio.connect("127.0.0.1", 7000, policy=policy) as connection:
            await connection.send(b"hello")

    The whole of it (TCP connect, TLS, handshake) is bounded by ``policy.handshake_timeout``.
    ``logger``: where this connection's log events go (a stdlib ``Logger``, a
    ``LoggerAdapter`` or a structlog logger; default: the ``pulsewire`` logger).
    Raises :class:`~pulsewire.HandshakeError` when the peer is not a compatible pulsewire
    peer, and :class:`~pulsewire.ConnectError` (its base) for every other failure.
    """
    policy = policy if policy is not None else Policy()
    deadline = anyio.current_time() + policy.handshake_timeout
    stream = await _open_tcp(host, port, ssl_context, tls_hostname, policy.handshake_timeout)
    async with _running(
        stream,
        f"{host}:{port}",
        deadline,
        policy,
        limits,
        socket_options,
        name,
        logger,
        initiator=True,
    ) as connection:
        yield connection


async def _open_tcp(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    tls_hostname: str | None,
    within: float,
) -> ByteStream:
    """A TCP stream (TLS with ``ssl_context``) to ``host:port``, connected within ``within``
    seconds; every failure is a ``ConnectError`` naming its cause."""
    where = f"{host}:{port}"
    try:
        with anyio.fail_after(within):
            if ssl_context is None:
                return await anyio.connect_tcp(host, port)
            return await anyio.connect_tcp(
                host, port, ssl_context=ssl_context, tls_hostname=tls_hostname or host
            )
    except TimeoutError:
        raise ConnectError(f"could not connect to {where} within {within} s") from None
    except ssl.SSLError as error:
        raise tls_failure(where, error) from error
    except anyio.BrokenResourceError as error:  # the TLS handshake failed
        if isinstance(error.__cause__, ssl.SSLError):
            raise tls_failure(where, error.__cause__) from error
        raise ConnectError(f"could not connect to {where}: {error.__cause__}") from error
    except OSError as error:
        raise ConnectError(f"could not connect to {where}: {error}") from error


async def _open_unix(path: str, within: float) -> ByteStream:
    """A stream to the Unix socket ``path``, connected within ``within`` seconds."""
    try:
        with anyio.fail_after(within):
            return await anyio.connect_unix(path)
    except TimeoutError:
        raise ConnectError(f"could not connect to {path} within {within} s") from None
    except OSError as error:
        raise ConnectError(f"could not connect to {path}: {error}") from error


@asynccontextmanager
async def connect_unix(
    path: str,
    *,
    policy: Policy | None = None,
    limits: Limits | None = None,
    name: str = "",
    logger: LoggerLike | None = None,
) -> AsyncIterator[Connection]:
    """Like :func:`connect`, over the Unix socket ``path``."""
    policy = policy if policy is not None else Policy()
    deadline = anyio.current_time() + policy.handshake_timeout
    stream = await _open_unix(path, policy.handshake_timeout)
    async with _running(
        stream, path, deadline, policy, limits, None, name, logger, initiator=True
    ) as connection:
        yield connection


@asynccontextmanager
async def wrap(
    stream: ByteStream,
    *,
    initiator: bool = True,
    policy: Policy | None = None,
    limits: Limits | None = None,
    socket_options: SocketOptions | None = None,
    name: str = "",
    logger: LoggerLike | None = None,
) -> AsyncIterator[Connection]:
    """Run pulsewire over a stream you opened yourself (any anyio ``ByteStream``).

    ``initiator``: this side opened the connection (a client); the other end wraps its
    stream with ``initiator=False``. The handshake is bounded by
    ``policy.handshake_timeout``; the stream is closed when the block ends.
    """
    policy = policy if policy is not None else Policy()
    deadline = anyio.current_time() + policy.handshake_timeout
    async with _running(
        stream,
        "the peer",
        deadline,
        policy,
        limits,
        socket_options,
        name,
        logger,
        initiator=initiator,
    ) as connection:
        yield connection


@asynccontextmanager
async def _running(
    stream: ByteStream,
    where: str,
    deadline: float,
    policy: Policy,
    limits: Limits | None,
    socket_options: SocketOptions | None,
    name: str,
    logger: LoggerLike | None,
    *,
    initiator: bool,
    observer: ConnectionObserver | None = None,
) -> AsyncIterator[Connection]:
    """Run the connection in a task group of its own while the caller's block runs."""
    driver = StreamDriver(
        stream,
        policy=policy,
        limits=limits if limits is not None else Limits(),
        socket_options=socket_options if socket_options is not None else SocketOptions(),
        name=name,
        initiator=initiator,
        log=event_logger(logger, _log),
    )
    connection = Connection(driver, observer=observer)
    failure: Exception | None = None
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(connection.run)
        try:
            with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                await connection.wait_state(State.ALIVE, State.SUSPECT, State.CLOSING)
        except TimeoutError:
            connection.abort()
            failure = ConnectError(f"no handshake with {where} within {policy.handshake_timeout} s")
        except ConnectionClosedError as error:
            failure = handshake_failure(
                where,
                error.death,
                handshake_timeout=policy.handshake_timeout,
                bytes_received=connection.stats().bytes_in,
                tls=stream.extra(TLSAttribute.ssl_object, None) is not None,
            )
            failure.__cause__ = error
        else:
            try:
                yield connection
            except Exception as error:
                # Raised again below, outside the task group: not wrapped in a group.
                failure = error
            finally:
                if connection.death is None:
                    try:
                        await connection.close()
                    except ConnectionClosedError as error:
                        # Messages were not delivered: the caller hears of it, unless the
                        # block's own error says more.
                        if failure is None:
                            failure = error
    if failure is not None:
        raise failure


@final
class Client:
    """Keeps one pulsewire connection alive, reconnecting after each death.

    The anyio counterpart of :class:`pulsewire.Client`, with the same rules: it connects
    to ``host:port`` (like :func:`connect`; TLS with ``ssl_context``, the certificate
    checked against ``tls_hostname`` or ``host``), or to the Unix socket ``path=`` (like
    :func:`connect_unix`). Attempts are spaced by ``backoff`` (exponential with full
    jitter; reset after each successful handshake). Each death and each reconnect is
    logged (``client.*`` events) and counted in :meth:`stats`, which is current as soon
    as each happens. A peer that closes with TOO_MANY_PINGS makes the client double its
    ping interval for every later connection, and say so loudly.

    It owns a task group: use it as an async context manager. ``async for connection in
    client`` yields each new live connection, and :meth:`connection` waits for the
    current one::

        async with pulsewire.anyio.Client("db.internal", 7000) as client:
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

    ``policy``, ``limits``, ``socket_options``, ``name`` and ``logger`` are used for
    every connection, as by :func:`connect`; ``rng`` draws the backoff's jitter (pass a
    seeded one for repeatable runs). Arguments that do not go together raise
    :class:`~pulsewire.UsageError` at once.
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
        ssl_context: ssl.SSLContext | None = None,
        tls_hostname: str | None = None,
        name: str = "",
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        retry_if: RetryIf | None = None,
        rng: random.Random | None = None,
        logger: LoggerLike | None = None,
    ) -> None:
        if tls_hostname is not None and ssl_context is None:
            raise UsageError("tls_hostname= names the server's certificate: it needs ssl_context=")
        if path is not None:
            if host is not None or port is not None:
                raise UsageError("Client() takes host and port, or path=, not both")
            if ssl_context is not None:
                raise UsageError("pulsewire.anyio.Client(path=...) has no TLS: drop ssl_context=")
            #: The server's Unix socket path (None for TCP).
            self.path: str | None = os.fspath(path)
            self._where = self.path
            self._open: _OpenStream = functools.partial(_open_unix, self.path)
        else:
            if host is None or port is None:
                raise UsageError("Client() needs host and port (or path=)")
            self.path = None
            self._where = f"{host}:{port}"
            self._open = functools.partial(_open_tcp, host, port, ssl_context, tls_hostname)
        #: The server's host name or address (None for a Unix socket).
        self.host = host
        #: The server's port (None for a Unix socket).
        self.port = port
        #: The policy of the next connection (its interval doubles after TOO_MANY_PINGS).
        self.policy = policy if policy is not None else Policy()
        #: The limits of every connection.
        self.limits = limits if limits is not None else Limits()
        #: The socket options of every connection (TCP only).
        self.socket_options = socket_options if socket_options is not None else SocketOptions()
        #: The TLS context of every connection (None: plain TCP).
        self.ssl_context = ssl_context
        #: The name TLS checks the server's certificate against (None: the host).
        self.tls_hostname = tls_hostname
        #: The name it sends in its HELLOs.
        self.name = name
        #: How long it waits between failed attempts.
        self.backoff = backoff if backoff is not None else Backoff()
        #: Consecutive failed attempts before it gives up (None: never).
        self.max_attempts = check_max_attempts(max_attempts)
        #: Whether a failed attempt is worth retrying (default: :meth:`retryable`).
        self.retry_if = retry_if if retry_if is not None else Client.retryable
        self._logger = logger
        self._log = event_logger(logger, _log)
        self._record = ClientRecord(
            self._where, self._log, rng if rng is not None else random.Random()
        )
        self._current: Connection | None = None
        self._changed = anyio.Event()
        self._tasks: TaskGroup | None = None
        self._closing = False

    @staticmethod
    def retryable(error: ConnectError) -> bool:
        """The default ``retry_if``, the same rule as :meth:`pulsewire.Client.retryable`:
        False for refusals that retrying cannot fix (a :class:`~pulsewire.TLSError`; a
        :class:`~pulsewire.HandshakeError` with code PROTOCOL_ERROR, UNSUPPORTED_VERSION,
        POLICY_MISMATCH, TOO_LARGE or an application's 4000-4999), True for every other
        failure (refused, unreachable, timed out, a peer that went away)."""
        return retryable(error)

    def stats(self) -> ClientStats:
        """A frozen snapshot: handshakes, failed attempts, deaths by reason, the policy."""
        return self._record.stats(self.policy)

    async def connection(self) -> Connection:
        """The current live connection, waiting for one if there is none.

        Raises the error the client gave up with (see the class documentation), or
        :class:`~pulsewire.UsageError` if the client is not running.
        """
        while not self._usable(self._current):
            self._check_running()
            await self._changed.wait()
        assert self._current is not None
        return self._current

    def __aiter__(self) -> _NewConnections:
        """``async for connection in client``: each new live connection, as it is
        established (after each death, the next one; leaving the loop is safe). Runs until
        the client is closed; raises the error the client gave up with."""
        return _NewConnections(self)

    async def __aenter__(self) -> Client:
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop reconnecting and close the current connection in order (raising, as
        :meth:`Connection.close` does, if messages sent on it were not delivered, unless
        the block raised). Then, if the client gave up and neither the block nor an
        earlier call has seen why, raise that error."""
        self._closing = True
        self._notify()
        current = self._current
        tasks = self._tasks
        assert tasks is not None
        try:
            if current is not None and current.death is None:
                try:
                    await current.close()
                except ConnectionClosedError:
                    if exc is None:
                        raise
        finally:
            tasks.cancel_scope.cancel()
            # The block's own exception, if any, goes on as itself (not in a group).
            await tasks.__aexit__(None, None, None)
        if exc is None:
            self._record.raise_if_unseen()

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _usable(connection: Connection | None) -> bool:
        return connection is not None and connection.death is None

    def _check_running(self) -> None:
        self._record.raise_if_gave_up()
        if self._closing or self._tasks is None:
            raise UsageError("the client is not running: use it as an async context manager")

    async def _next_after(self, seen: Connection | None) -> Connection:
        while self._current is seen or not self._usable(self._current):
            self._check_running()
            await self._changed.wait()
        assert self._current is not None
        return self._current

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def _run(self) -> None:
        try:
            await self._keep_connected()
        except Exception as error:  # gave up, or retry_if raised: the user hears of it
            # Not raised into the task group: that would cancel the user's block.
            self._record.gave_up(error)
            self._notify()

    async def _keep_connected(self) -> None:
        record = self._record
        while not self._closing:
            policy = self.policy
            deadline = anyio.current_time() + policy.handshake_timeout
            try:
                stream = await self._open(policy.handshake_timeout)
                async with _running(
                    stream,
                    self._where,
                    deadline,
                    policy,
                    self.limits,
                    self.socket_options,
                    self.name,
                    self._logger,
                    initiator=True,
                    observer=record,
                ) as connection:
                    record.connected()
                    self._current = connection
                    self._notify()
                    death = await connection.wait_dead()
            except ConnectError as error:
                delay = record.attempt_failed(
                    error,
                    retry_if=self.retry_if,
                    max_attempts=self.max_attempts,
                    backoff=self.backoff,
                )
                await anyio.sleep(delay)
                continue
            self._notify()
            self.policy = policy_after_death(self.policy, death, self._where, self._log)
            if not self._closing:
                await anyio.sleep(record.delay_after_death(self.backoff))


class _NewConnections:
    """``async for connection in client``: a plain iterator, nothing to finalize."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._seen: Connection | None = None

    def __aiter__(self) -> _NewConnections:
        return self

    async def __anext__(self) -> Connection:
        self._seen = await self._client._next_after(self._seen)
        return self._seen
