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
import re
import ssl as _ssl
from collections.abc import Awaitable, Callable

from pulsewire._log import EventLogger
from pulsewire.asyncio.arguments import check_settings
from pulsewire.asyncio.connection import Connection, ConnectionObserver
from pulsewire.asyncio.protocol import PulsewireProtocol
from pulsewire.asyncio.scheduler import scheduler_for
from pulsewire.core.events import Death, Source
from pulsewire.core.frames import CloseCode
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Limits, Policy
from pulsewire.core.states import Reason, State
from pulsewire.errors import ConnectError, ConnectionClosedError, HandshakeError, TLSError

__all__ = ["OpenTransport", "handshake_failure", "open_connection", "tls_failure"]

#: Given the protocol factory, bring up the transport (and call ``connection_made``).
OpenTransport = Callable[[Callable[[], PulsewireProtocol]], Awaitable[object]]

_CLOSE_CODES = frozenset(CloseCode)
#: OpenSSL's text inside ``[SSL: REASON] text (_ssl.c:1234)``.
_SSL_TEXT = re.compile(r"\] (.+?)(?: \(_ssl\.c:\d+\))?$")
#: The peer went away during the TLS handshake: retrying may well work.
_TLS_CUT_SHORT = (_ssl.SSLEOFError, _ssl.SSLZeroReturnError, _ssl.SSLSyscallError)
#: OpenSSL reasons that deserve a plainer explanation.
_TLS_HINTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the peer refused our certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust the CA that signed our certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the peer refused our certificate",
    "WRONG_VERSION_NUMBER": "the peer does not speak TLS",
}


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
        raise handshake_failure(where, error.death, connection) from error
    except BaseException:
        connection.abort()  # cancelled: leave nothing half open
        raise
    return connection


def handshake_failure(where: str, death: Death, connection: Connection) -> ConnectError:
    """The error for a connection that died before its handshake completed."""
    error = death.error
    if isinstance(error, _ssl.SSLError):
        return tls_failure(where, error)
    if isinstance(error, HandshakeError):
        if error.code == CloseCode.HANDSHAKE_TIMEOUT and death.source is Source.HEARTBEAT:
            # Our own deadline: the peer accepted the connection and then said nothing we
            # could read as a pulsewire greeting.
            timeout = connection.policy.handshake_timeout
            received = connection.stats().bytes_in
            sent = "sent nothing" if not received else f"sent {received} bytes but no HELLO"
            return HandshakeError(
                f"{where} accepted the connection but {sent} within the handshake timeout "
                f"({timeout} s): it is not a pulsewire peer, or it is stuck",
                error.code,
            )
        return HandshakeError(f"handshake with {where} failed: {error}", error.code)
    if connection.stats().bytes_in == 0 and death.reason in (Reason.EOF, Reason.RESET):
        # A pulsewire peer sends its preamble as soon as it is connected: this one closed
        # before. Over TLS, that is how an asyncio server refuses a client certificate (it
        # drops the connection without sending its alert).
        if connection.get_extra_info("ssl_object") is not None:
            return TLSError(
                f"TLS with {where} failed: the server dropped the connection right after the "
                "TLS handshake: it most likely refused our client certificate (none sent, or "
                "an issuer it does not trust)"
            )
        return ConnectError(
            f"{where} closed the connection before sending anything ({death.reason.value}): "
            "is it a pulsewire server, and does it expect TLS?"
        )
    if death.close_code is not None:
        # Carry the peer's code (which the session echoed), not a generic PROTOCOL_ERROR.
        code = CloseCode(death.close_code) if death.close_code in _CLOSE_CODES else None
        why = f" ({death.close_reason})" if death.close_reason else ""
        return HandshakeError(
            f"{where} closed during the handshake with code {death.close_code}{why}",
            death.close_code if code is None else code,
        )
    return ConnectError(f"connection to {where} died during the handshake: {death.describe()}")


def tls_failure(where: str, error: _ssl.SSLError) -> ConnectError:
    """A :class:`TLSError` naming the cause; a peer that vanished mid-way is no TLS error."""
    if isinstance(error, _TLS_CUT_SHORT):
        return ConnectError(f"{where} closed the connection during the TLS handshake: {error}")
    if isinstance(error, _ssl.SSLCertVerificationError):
        cause = f"certificate verify failed: {error.verify_message}"
    else:
        match = _SSL_TEXT.search(str(error.args[-1]) if error.args else "")
        cause = match.group(1) if match else str(error)
        hint = _TLS_HINTS.get(error.reason or "")
        if hint:
            cause = f"{hint} ({cause})"
    return TLSError(f"TLS with {where} failed: {cause}")
