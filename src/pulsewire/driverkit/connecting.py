"""What a failed opening raises; how a reconnecting client reports a death and backs off.

Shared by the drivers: every failure to open a connection becomes a
:class:`~pulsewire.ConnectError` that names its cause
(:class:`~pulsewire.HandshakeError`: not a compatible pulsewire peer;
:class:`~pulsewire.TLSError`: a certificate was refused, no common TLS version; the base
class: refused, unreachable, timed out, the peer vanished mid-way).
"""

from __future__ import annotations

import re
import ssl as _ssl

import msgspec

from pulsewire import logevents
from pulsewire._log import EventLogger
from pulsewire.core.events import Death, Source
from pulsewire.core.frames import CloseCode
from pulsewire.core.policy import Policy
from pulsewire.core.states import Reason
from pulsewire.errors import ConnectError, HandshakeError, TLSError

__all__ = ["ClientStats", "handshake_failure", "policy_after_death", "tls_failure"]

# Caps for the TOO_MANY_PINGS back-off: a timeout of a day is the protocol's limit.
_MAX_TIMEOUT = 86_400.0
_MAX_INTERVAL = _MAX_TIMEOUT / 2

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


class ClientStats(msgspec.Struct, frozen=True):
    """What a ``Client`` has been through (current as soon as each event happens)."""

    connects: int  #: successful handshakes
    failed_attempts: int  #: connection attempts that failed
    deaths: dict[str, int]  #: deaths of its connections, by reason
    policy: Policy  #: the policy in force (its interval doubles after TOO_MANY_PINGS)


def handshake_failure(
    where: str, death: Death, *, handshake_timeout: float, bytes_received: int, tls: bool
) -> ConnectError:
    """The error for a connection that died before its handshake completed.

    ``bytes_received``: what the peer had sent; ``tls``: the connection runs over TLS.
    """
    error = death.error
    if isinstance(error, _ssl.SSLError):
        return tls_failure(where, error)
    if isinstance(error, HandshakeError):
        if error.code == CloseCode.HANDSHAKE_TIMEOUT and death.source is Source.HEARTBEAT:
            # Our own deadline: the peer accepted the connection and then said nothing we
            # could read as a pulsewire greeting.
            received = bytes_received
            sent = "sent nothing" if not received else f"sent {received} bytes but no HELLO"
            return HandshakeError(
                f"{where} accepted the connection but {sent} within the handshake timeout "
                f"({handshake_timeout} s): it is not a pulsewire peer, or it is stuck",
                error.code,
            )
        return HandshakeError(f"handshake with {where} failed: {error}", error.code)
    if bytes_received == 0 and death.reason in (Reason.EOF, Reason.RESET):
        # A pulsewire peer sends its preamble as soon as it is connected: this one closed
        # before. Over TLS, that is how an asyncio server refuses a client certificate (it
        # drops the connection without sending its alert).
        if tls:
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


def policy_after_death(policy: Policy, death: Death, where: str, log: EventLogger) -> Policy:
    """Log a reconnecting client's death; return the policy for its next connection.

    A peer that closed with TOO_MANY_PINGS refuses pings this frequent: the interval
    doubles (and the timeout with it, when it would no longer exceed the interval), up to
    caps, and the client says so loudly. Otherwise ``policy`` is kept.
    """
    log.warning(
        logevents.CLIENT_DISCONNECTED,
        peer=where,
        reason=death.reason.value,
        source=death.source.value,
        silence=round(death.silence, 4),
    )
    if death.source is not Source.PEER or death.close_code != CloseCode.TOO_MANY_PINGS:
        return policy
    interval = min(policy.interval * 2, _MAX_INTERVAL)
    timeout = policy.timeout if policy.timeout > interval else min(policy.timeout * 2, _MAX_TIMEOUT)
    if interval >= timeout:  # already at the caps: nothing more to give
        return policy
    log.error(
        logevents.CLIENT_PING_BACKOFF,
        peer=where,
        old_interval=policy.interval,
        new_interval=interval,
        timeout=timeout,
        hint="the server refuses pings this frequent: align the two policies",
    )
    return msgspec.structs.replace(policy, interval=interval, timeout=timeout)
