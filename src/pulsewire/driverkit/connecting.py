"""What a failed opening raises; when a reconnecting client retries, gives up, backs off.

Shared by the drivers: every failure to open a connection becomes a
:class:`~pulsewire.ConnectError` that names its cause
(:class:`~pulsewire.HandshakeError`: not a compatible pulsewire peer;
:class:`~pulsewire.TLSError`: a certificate was refused, no common TLS version; the base
class: refused, unreachable, timed out, the peer vanished mid-way). Both drivers'
``Client`` keep their record in a :class:`ClientRecord`, which decides after each failed
attempt whether to wait and retry or to give up (:func:`retryable`, ``max_attempts``), and
after each death how to go on (:func:`policy_after_death`). The Clients only do the I/O.
"""

from __future__ import annotations

import random
import re
import ssl as _ssl
from collections import Counter
from collections.abc import Callable
from typing import Protocol, TypeAlias, final

import msgspec

from pulsewire import logevents
from pulsewire._log import EventLogger
from pulsewire.core.backoff import Backoff
from pulsewire.core.events import Death, Source
from pulsewire.core.frames import CloseCode
from pulsewire.core.policy import Policy
from pulsewire.core.session import Negotiated
from pulsewire.core.states import Reason
from pulsewire.errors import ConnectError, HandshakeError, TLSError

__all__ = [
    "REFUSALS",
    "ClientRecord",
    "ClientStats",
    "RetryIf",
    "check_max_attempts",
    "handshake_failure",
    "policy_after_death",
    "retryable",
    "tls_failure",
]

#: A Client's ``retry_if``: given a failed attempt's error, whether to try again.
RetryIf: TypeAlias = Callable[[ConnectError], bool]

#: Close codes by which a peer refuses the handshake for good: retrying cannot help.
REFUSALS = frozenset(
    {
        CloseCode.PROTOCOL_ERROR,
        CloseCode.UNSUPPORTED_VERSION,
        CloseCode.POLICY_MISMATCH,
        CloseCode.TOO_LARGE,
    }
)

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


def retryable(error: ConnectError) -> bool:
    """Both Clients' default ``retry_if`` (``Client.retryable``, documented there): False
    for a TLS error and for a handshake refused with a code in :data:`REFUSALS` or an
    application's 4000-4999; True for every other failure."""
    if isinstance(error, TLSError):
        return False
    if isinstance(error, HandshakeError):
        return error.code not in REFUSALS and not 4000 <= error.code <= 4999
    return True


def check_max_attempts(max_attempts: object) -> int | None:
    """A Client's ``max_attempts``: a positive int, or None (never give up for the count)."""
    if max_attempts is not None and (
        isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
    ):
        raise ValueError(f"max_attempts must be a positive int or None, not {max_attempts!r}")
    return max_attempts


class _Handshaken(Protocol):
    """A connection, as far as the record needs it: did its handshake complete?"""

    @property
    def negotiated(self) -> Negotiated | None: ...


@final
class ClientRecord:
    """What a reconnecting client has been through, and what it does next.

    The Client runs the attempts and the waits; after each, it tells the record, which
    counts, logs the ``client.*`` event, and decides: after a failed attempt, wait
    (:meth:`attempt_failed` returns how long) or give up (it raises the error the
    client gives up with). The record is also the observer of the client's connections:
    a death is counted as it happens, before anyone waiting on the connection wakes up,
    so that ``stats()`` is current in the user's own loop.
    """

    #: Messages stay with the connection, for its user's ``recv()``.
    takes_messages = False
    #: A failed handshake is the connection's to log (the record logs the attempt too).
    logs_handshake_failures = False

    def __init__(self, where: str, log: EventLogger, rng: random.Random) -> None:
        self._where = where
        self._log = log
        self._rng = rng
        self._connects = 0
        self._failed = 0
        self._failed_in_a_row = 0
        self._deaths: Counter[str] = Counter()
        self._gave_up: BaseException | None = None  # why the client stopped trying
        self._gave_up_seen = False  # raised to the user already

    # ------------------------------------------------------------------ giving up

    def gave_up(self, error: BaseException) -> None:
        """The client stopped trying because of ``error``: the user is told of it."""
        self._gave_up = error

    def raise_if_gave_up(self) -> None:
        """Raise the error the client gave up with, if it did (every call)."""
        if self._gave_up is not None:
            self._gave_up_seen = True
            raise self._gave_up

    def raise_if_unseen(self) -> None:
        """Raise the error the client gave up with, unless the user has seen it already
        (the exit of an ``async with`` block that never asked)."""
        if not self._gave_up_seen:
            self.raise_if_gave_up()

    def stats(self, policy: Policy) -> ClientStats:
        """A frozen snapshot, with ``policy`` the one in force."""
        return ClientStats(
            connects=self._connects,
            failed_attempts=self._failed,
            deaths=dict(self._deaths),
            policy=policy,
        )

    def attempt_failed(
        self,
        error: ConnectError,
        *,
        retry_if: RetryIf,
        max_attempts: int | None,
        backoff: Backoff,
    ) -> float:
        """Count a failed attempt; return how long to wait before the next one.

        Raises the error the client gives up with: ``error`` itself when ``retry_if(error)``
        is false (called once per attempt, after the count), or, after ``max_attempts``
        failures in a row, a :class:`~pulsewire.ConnectError` that says so, whose
        ``__cause__`` is ``error``. Whatever ``retry_if`` raises passes through.
        """
        self._failed += 1
        self._failed_in_a_row += 1
        failures = self._failed_in_a_row
        final: ConnectError | None = None
        if not retry_if(error):
            final = error
        elif max_attempts is not None and failures >= max_attempts:
            final = ConnectError(
                f"gave up on {self._where} after {failures} failed attempts in a row; "
                f"the last: {error}"
            )
            final.__cause__ = error
        if final is not None:
            self._log.error(
                logevents.CLIENT_GAVE_UP, peer=self._where, attempts=failures, error=str(error)
            )
            raise final
        delay = backoff.delay(failures - 1, self._rng)
        self._log.warning(
            logevents.CLIENT_CONNECT_FAILED,
            peer=self._where,
            error=str(error),
            retry_in=round(delay, 3),
        )
        return delay

    def connected(self) -> None:
        """A handshake completed: count it, and start the failures in a row afresh."""
        self._failed_in_a_row = 0
        self._connects += 1
        if self._connects > 1:
            self._log.info(logevents.CLIENT_RECONNECTED, peer=self._where, connects=self._connects)

    def delay_after_death(self, backoff: Backoff) -> float:
        """How long to wait before reconnecting after a death: one first attempt's
        delay, so that the clients of a restarting server do not all come back at once."""
        return backoff.delay(0, self._rng)

    # The observer of the client's connections (both drivers' ConnectionObserver) ------

    def connection_made(self, connection: object) -> None:
        pass

    def connection_ready(self, connection: object) -> None:
        pass

    def message_received(
        self, connection: object, message: bytes, consumed: Callable[[int], None]
    ) -> None:
        pass

    def connection_suspected(self, connection: object) -> None:
        pass

    def connection_recovered(self, connection: object) -> None:
        pass

    def connection_dead(self, connection: _Handshaken, death: Death) -> None:
        if connection.negotiated is not None:  # a failed handshake is a failed attempt
            self._deaths[death.reason.value] += 1


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
