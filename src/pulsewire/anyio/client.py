"""Connecting over anyio: ``connect()``, ``connect_unix()``, ``wrap()`` and ``Client``.

A connection's tasks need a task group, so each of these is an async context manager
that owns one: the connection lives inside the ``async with`` block and is closed in
order when the block ends (cancelled, it says CLOSE GOING_AWAY, best effort, and is
dropped). An exception raised in the block comes out of it as itself, not wrapped in an
exception group.
"""

from __future__ import annotations

import random
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import final

import anyio
from anyio.abc import ByteStream, TaskGroup
from anyio.streams.tls import TLSAttribute

from pulsewire import logevents
from pulsewire._log import LoggerLike, event_logger, get_logger
from pulsewire.anyio.connection import Connection
from pulsewire.anyio.driver import StreamDriver
from pulsewire.core.backoff import Backoff
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Limits, Policy
from pulsewire.core.states import State
from pulsewire.driverkit.connecting import (
    ClientStats,
    handshake_failure,
    policy_after_death,
    tls_failure,
)
from pulsewire.errors import ConnectError, ConnectionClosedError, UsageError

__all__ = ["Client", "connect", "connect_unix", "wrap"]

_log = get_logger()


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
    where = f"{host}:{port}"
    try:
        with anyio.fail_after(policy.handshake_timeout):
            stream: ByteStream
            if ssl_context is None:
                stream = await anyio.connect_tcp(host, port)
            else:
                stream = await anyio.connect_tcp(
                    host, port, ssl_context=ssl_context, tls_hostname=tls_hostname or host
                )
    except TimeoutError:
        raise ConnectError(
            f"could not connect to {where} within {policy.handshake_timeout} s"
        ) from None
    except ssl.SSLError as error:
        raise tls_failure(where, error) from error
    except anyio.BrokenResourceError as error:  # the TLS handshake failed
        if isinstance(error.__cause__, ssl.SSLError):
            raise tls_failure(where, error.__cause__) from error
        raise ConnectError(f"could not connect to {where}: {error.__cause__}") from error
    except OSError as error:
        raise ConnectError(f"could not connect to {where}: {error}") from error
    async with _running(
        stream, where, deadline, policy, limits, socket_options, name, logger, initiator=True
    ) as connection:
        yield connection


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
    try:
        with anyio.fail_after(policy.handshake_timeout):
            stream = await anyio.connect_unix(path)
    except TimeoutError:
        raise ConnectError(
            f"could not connect to {path} within {policy.handshake_timeout} s"
        ) from None
    except OSError as error:
        raise ConnectError(f"could not connect to {path}: {error}") from error
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
    connection = Connection(driver)
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
    """Keeps one pulsewire connection to ``host:port`` alive, reconnecting after each death.

    The anyio counterpart of :class:`pulsewire.Client`, with the same back-off (``backoff``,
    reset after each successful handshake), the same ``client.*`` log events and stats,
    and the same doubling of the ping interval after TOO_MANY_PINGS. It owns a task group:
    use it as an async context manager::

        async with pulsewire.anyio.Client("db.internal", 7000) as client:
            async for connection in client:
                async for message in connection:
                    ...
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        policy: Policy | None = None,
        limits: Limits | None = None,
        socket_options: SocketOptions | None = None,
        ssl_context: ssl.SSLContext | None = None,
        name: str = "",
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        logger: LoggerLike | None = None,
    ) -> None:
        #: The server's host name or address.
        self.host = host
        #: The server's port.
        self.port = port
        #: The policy of the next connection (its interval doubles after TOO_MANY_PINGS).
        self.policy = policy if policy is not None else Policy()
        #: The limits of every connection (None: the defaults).
        self.limits = limits
        #: The socket options of every connection (None: the defaults).
        self.socket_options = socket_options
        #: The TLS context of every connection (None: plain TCP).
        self.ssl_context = ssl_context
        #: The name it sends in its HELLOs.
        self.name = name
        #: How long it waits between failed attempts.
        self.backoff = backoff if backoff is not None else Backoff()
        self._rng = rng if rng is not None else random.Random()
        self._logger = logger
        self._log = event_logger(logger, _log)
        self._current: Connection | None = None
        self._changed = anyio.Event()
        self._tasks: TaskGroup | None = None
        self._closing = False
        self._connects = 0
        self._failed = 0
        self._deaths: Counter[str] = Counter()

    def stats(self) -> ClientStats:
        """A frozen snapshot: handshakes, failed attempts, deaths by reason, the policy."""
        return ClientStats(
            connects=self._connects,
            failed_attempts=self._failed,
            deaths=dict(self._deaths),
            policy=self.policy,
        )

    async def connection(self) -> Connection:
        """The current live connection, waiting for one if there is none."""
        while not self._usable(self._current):
            self._check_running()
            await self._changed.wait()
        assert self._current is not None
        return self._current

    def __aiter__(self) -> _NewConnections:
        """Each new live connection, as it is established (leaving the loop is safe)."""
        return _NewConnections(self)

    async def _next_after(self, seen: Connection | None) -> Connection:
        while self._current is seen or not self._usable(self._current):
            self._check_running()
            await self._changed.wait()
        assert self._current is not None
        return self._current

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
        the block raised)."""
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

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _usable(connection: Connection | None) -> bool:
        return connection is not None and connection.death is None

    def _check_running(self) -> None:
        if self._closing or self._tasks is None:
            raise UsageError("the client is not running: use it as an async context manager")

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def _run(self) -> None:
        where = f"{self.host}:{self.port}"
        attempt = 0
        while not self._closing:
            try:
                async with connect(
                    self.host,
                    self.port,
                    policy=self.policy,
                    limits=self.limits,
                    socket_options=self.socket_options,
                    ssl_context=self.ssl_context,
                    name=self.name,
                    logger=self._logger,
                ) as connection:
                    attempt = 0
                    self._connects += 1
                    if self._connects > 1:
                        self._log.info(
                            logevents.CLIENT_RECONNECTED, peer=where, connects=self._connects
                        )
                    self._current = connection
                    self._notify()
                    death = await connection.wait_dead()
            except ConnectError as error:
                self._failed += 1
                delay = self.backoff.delay(attempt, self._rng)
                attempt += 1
                self._log.warning(
                    logevents.CLIENT_CONNECT_FAILED,
                    peer=where,
                    error=str(error),
                    retry_in=round(delay, 3),
                )
                await anyio.sleep(delay)
                continue
            self._deaths[death.reason.value] += 1
            self._notify()
            self.policy = policy_after_death(self.policy, death, where, self._log)
            await anyio.sleep(self.backoff.delay(0, self._rng))


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
