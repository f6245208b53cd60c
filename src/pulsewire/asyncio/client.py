"""Connecting: ``connect()`` returns a live ``Connection`` once the handshake is done."""

from __future__ import annotations

import asyncio
import ssl as _ssl

from pulsewire.asyncio.connection import Connection
from pulsewire.asyncio.protocol import PulsewireProtocol
from pulsewire.asyncio.scheduler import scheduler_for
from pulsewire.core.frames import CloseCode
from pulsewire.core.policy import Limits, Policy
from pulsewire.errors import ConnectError, ConnectionClosedError, HandshakeError

__all__ = ["connect"]

_CLOSE_CODES = frozenset(CloseCode)


async def connect(
    host: str,
    port: int,
    *,
    policy: Policy | None = None,
    limits: Limits | None = None,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    name: str = "",
) -> Connection:
    """Open a TCP connection, run the handshake, and return the live ``Connection``.

    The whole of it (TCP connect, TLS, handshake) is bounded by ``policy.handshake_timeout``.
    Raises :class:`~pulsewire.HandshakeError` when the peer is not a compatible pulsewire
    peer, and :class:`~pulsewire.ConnectError` (its base) for every other failure.
    """
    policy = policy if policy is not None else Policy()
    limits = limits if limits is not None else Limits()
    loop = asyncio.get_running_loop()
    scheduler = scheduler_for(loop)
    connection = Connection(policy=policy, limits=limits, name=name)
    where = f"{host}:{port}"
    try:
        async with asyncio.timeout(policy.handshake_timeout):
            await loop.create_connection(
                lambda: PulsewireProtocol(connection, scheduler),
                host,
                port,
                ssl=ssl,
                server_hostname=server_hostname,
            )
            await connection._wait_ready()
    except TimeoutError:
        connection.abort()
        raise ConnectError(
            f"could not connect to {where} within {policy.handshake_timeout} s"
        ) from None
    except ConnectionClosedError as error:
        death = error.death
        if isinstance(death.error, HandshakeError):
            raise HandshakeError(
                f"handshake with {where} failed: {death.describe()}", death.error.code
            ) from error
        if death.close_code is not None:
            # Carry the peer's code (which the session echoed), not a generic PROTOCOL_ERROR.
            code = CloseCode(death.close_code) if death.close_code in _CLOSE_CODES else None
            raise HandshakeError(
                f"{where} refused the handshake: {death.describe()}", code
            ) from error
        raise ConnectError(
            f"connection to {where} died during the handshake: {death.describe()}"
        ) from error
    except OSError as error:
        raise ConnectError(f"could not connect to {where}: {error}") from error
    return connection
