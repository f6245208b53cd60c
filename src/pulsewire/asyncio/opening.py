"""Opening one connection: the transport, then the handshake, and what each failure means.

Every way of opening a connection (``connect()`` to a host or a Unix path, over a socket
the caller connected, or by taking over a pair of asyncio streams) differs only in how the
transport comes to be; the rest is here, once:

- the transport (TCP connect, TLS) must be up within ``policy.handshake_timeout``;
- then the session's own handshake deadline runs (``handshake_timeout`` again, from the
  moment the transport connected): a peer that accepted the connection but never greets
  us is told so with ``CLOSE(HANDSHAKE_TIMEOUT)`` and reported as what it is;
- every failure becomes a :class:`~pulsewire.ConnectError` that names its cause:
  :class:`~pulsewire.HandshakeError` (not a compatible pulsewire peer),
  :class:`~pulsewire.TLSError` (a certificate was refused, no common TLS version), or the
  base class (refused, unreachable, timed out, the peer vanished mid-way).
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Awaitable, Callable

from pulsewire._log import EventLogger
from pulsewire.asyncio.arguments import check_settings
from pulsewire.asyncio.connection import Connection, ConnectionObserver
from pulsewire.asyncio.protocol import PulsewireProtocol
from pulsewire.asyncio.scheduler import scheduler_for
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Limits, Policy
from pulsewire.core.states import State
from pulsewire.driverkit.connecting import handshake_failure, tls_failure
from pulsewire.errors import ConnectError, ConnectionClosedError

__all__ = ["OpenTransport", "handshake_failure", "open_connection", "tls_failure"]

#: Given the protocol factory, bring up the transport (and call ``connection_made``).
OpenTransport = Callable[[Callable[[], PulsewireProtocol]], Awaitable[object]]


async def open_connection(
    open_transport: OpenTransport,
    where: str,
    *,
    policy: Policy,
    limits: Limits,
    socket_options: SocketOptions,
    name: str,
    initiator: bool,
    log: EventLogger,
    observer: ConnectionObserver | None = None,
) -> Connection:
    """Open the transport, run the handshake, return the live connection (see module doc)."""
    check_settings(policy, limits, socket_options, name)
    protocol = PulsewireProtocol(
        scheduler_for(asyncio.get_running_loop()),
        policy=policy,
        limits=limits,
        socket_options=socket_options,
        name=name,
        initiator=initiator,
        log=log,
    )
    connection = Connection(protocol, observer=observer)
    try:
        async with asyncio.timeout(policy.handshake_timeout) as deadline:
            await open_transport(lambda: protocol)
    except TimeoutError as error:
        if not deadline.expired():
            raise ConnectError(f"could not connect to {where}: {error}") from error
        connection.abort()
        raise ConnectError(
            f"could not connect to {where} within {policy.handshake_timeout} s"
        ) from None
    except _ssl.SSLError as error:
        raise tls_failure(where, error) from error
    except (OSError, UnicodeError) as error:  # UnicodeError: a host name IDNA cannot encode
        raise ConnectError(f"could not connect to {where}: {error}") from error
    try:
        await connection.wait_state(State.ALIVE, State.SUSPECT, State.CLOSING)
    except ConnectionClosedError as error:
        raise handshake_failure(
            where,
            error.death,
            handshake_timeout=connection.policy.handshake_timeout,
            bytes_received=connection.stats().bytes_in,
            tls=connection.get_extra_info("ssl_object") is not None,
        ) from error
    except BaseException:
        connection.abort()  # cancelled: leave nothing half open
        raise
    return connection
