"""Connecting: ``connect()`` for one connection, ``Client`` to keep one alive."""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl as _ssl
from collections import Counter
from collections.abc import AsyncIterator
from types import TracebackType
from typing import final

import structlog

from pulsewire import logevents
from pulsewire.asyncio.connection import Connection
from pulsewire.asyncio.protocol import PulsewireProtocol
from pulsewire.asyncio.scheduler import scheduler_for
from pulsewire.core.backoff import Backoff
from pulsewire.core.events import Death
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Limits, Policy
from pulsewire.core.states import State
from pulsewire.driverkit.connecting import ClientStats, handshake_failure, policy_after_death
from pulsewire.errors import ConnectError, ConnectionClosedError, UsageError

__all__ = ["Client", "ClientStats", "connect"]

_log = structlog.get_logger("pulsewire")


async def connect(
    host: str,
    port: int,
    *,
    policy: Policy | None = None,
    limits: Limits | None = None,
    socket_options: SocketOptions | None = None,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    name: str = "",
) -> Connection:
    """Open a TCP connection, run the handshake, and return the live ``Connection``.

    ``socket_options`` are set on the socket (default :class:`~pulsewire.SocketOptions`).

    The whole of it (TCP connect, TLS, handshake) is bounded by ``policy.handshake_timeout``.
    Raises :class:`~pulsewire.HandshakeError` when the peer is not a compatible pulsewire
    peer, and :class:`~pulsewire.ConnectError` (its base) for every other failure.
    """
    policy = policy if policy is not None else Policy()
    limits = limits if limits is not None else Limits()
    loop = asyncio.get_running_loop()
    protocol = PulsewireProtocol(
        scheduler_for(loop),
        policy=policy,
        limits=limits,
        socket_options=socket_options if socket_options is not None else SocketOptions(),
        name=name,
        initiator=True,
    )
    connection = Connection(protocol)
    where = f"{host}:{port}"
    try:
        async with asyncio.timeout(policy.handshake_timeout):
            await loop.create_connection(
                lambda: protocol, host, port, ssl=ssl, server_hostname=server_hostname
            )
            await connection.wait_state(State.ALIVE, State.SUSPECT, State.CLOSING)
    except TimeoutError:
        connection.abort()
        raise ConnectError(
            f"could not connect to {where} within {policy.handshake_timeout} s"
        ) from None
    except ConnectionClosedError as error:
        raise handshake_failure(where, error.death) from error
    except OSError as error:
        raise ConnectError(f"could not connect to {where}: {error}") from error
    return connection


@final
class Client:
    """Keeps one pulsewire connection to ``host:port`` alive, reconnecting after each death.

    Attempts are spaced by ``backoff`` (exponential with full jitter; reset after each
    successful handshake). Each death and each reconnect is logged (``client.*`` events)
    and counted in :meth:`stats`. A peer that closes with TOO_MANY_PINGS makes the client
    double its ping interval for every later connection, and say so loudly.

    Use it as an async context manager; ``async for connection in client`` yields each new
    live connection, and :meth:`connection` waits for the current one::

        async with pulsewire.Client("db.internal", 7000, policy=pulsewire.Policy.wan()) as client:
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
        ssl: _ssl.SSLContext | None = None,
        name: str = "",
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.policy = policy if policy is not None else Policy()
        self.limits = limits if limits is not None else Limits()
        self.socket_options = socket_options
        self.ssl = ssl
        self.name = name
        self.backoff = backoff if backoff is not None else Backoff()
        self._rng = rng if rng is not None else random.Random()
        self._current: Connection | None = None
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._connects = 0
        self._failed = 0
        self._deaths: Counter[str] = Counter()

    # ------------------------------------------------------------------ public

    def stats(self) -> ClientStats:
        return ClientStats(
            connects=self._connects,
            failed_attempts=self._failed,
            deaths=dict(self._deaths),
            policy=self.policy,
        )

    async def connection(self) -> Connection:
        """The current live connection, waiting for one if there is none."""
        async with self._changed:
            while not self._usable(self._current):
                self._check_running()
                await self._changed.wait()
            assert self._current is not None
            return self._current

    async def __aiter__(self) -> AsyncIterator[Connection]:
        """Each new live connection, as it is established."""
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
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop reconnecting and close the current connection in order."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        current = self._current
        if current is not None and current.death is None:
            await current.close()
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

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _usable(connection: Connection | None) -> bool:
        return connection is not None and connection.death is None

    def _check_running(self) -> None:
        if self._closing or self._task is None:
            raise UsageError("the client is not running: use it as an async context manager")

    async def _run(self) -> None:
        where = f"{self.host}:{self.port}"
        attempt = 0
        while not self._closing:
            try:
                connection = await connect(
                    self.host,
                    self.port,
                    policy=self.policy,
                    limits=self.limits,
                    socket_options=self.socket_options,
                    ssl=self.ssl,
                    name=self.name,
                )
            except ConnectError as error:
                self._failed += 1
                delay = self.backoff.delay(attempt, self._rng)
                attempt += 1
                _log.warning(
                    logevents.CLIENT_CONNECT_FAILED,
                    peer=where,
                    error=str(error),
                    retry_in=round(delay, 3),
                )
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self._connects += 1
            if self._connects > 1:
                _log.info(logevents.CLIENT_RECONNECTED, peer=where, connects=self._connects)
            async with self._changed:
                self._current = connection
                self._changed.notify_all()
            death = await connection.wait_dead()
            self._deaths[death.reason.value] += 1
            async with self._changed:
                self._changed.notify_all()
            self._on_death(death, where)
            if not self._closing:
                await asyncio.sleep(self.backoff.delay(0, self._rng))

    def _on_death(self, death: Death, where: str) -> None:
        self.policy = policy_after_death(self.policy, death, where)
