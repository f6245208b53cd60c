"""What a failed handshake raises; how a reconnecting client reports a death and backs off."""

from __future__ import annotations

import msgspec
import structlog

from pulsewire import logevents
from pulsewire.core.events import Death, Source
from pulsewire.core.frames import CloseCode
from pulsewire.core.policy import Policy
from pulsewire.errors import ConnectError, HandshakeError

__all__ = ["ClientStats", "handshake_failure", "policy_after_death"]

# Caps for the TOO_MANY_PINGS back-off: a timeout of a day is the protocol's limit.
_MAX_TIMEOUT = 86_400.0
_MAX_INTERVAL = _MAX_TIMEOUT / 2

_CLOSE_CODES = frozenset(CloseCode)

_log = structlog.get_logger("pulsewire")


class ClientStats(msgspec.Struct, frozen=True):
    """What a reconnecting ``Client`` has been through."""

    connects: int  #: successful handshakes
    failed_attempts: int  #: connection attempts that failed
    deaths: dict[str, int]  #: deaths of its connections, by reason
    policy: Policy  #: the policy in force (its interval doubles after TOO_MANY_PINGS)


def handshake_failure(where: str, death: Death) -> ConnectError:
    """The error ``connect()`` raises for a connection that died during its handshake.

    :class:`~pulsewire.HandshakeError` when the peer is not a compatible pulsewire peer
    (its close code carried over), :class:`~pulsewire.ConnectError` for any other death.
    """
    if isinstance(death.error, HandshakeError):
        return HandshakeError(f"handshake with {where} failed: {death.error}", death.error.code)
    if death.close_code is not None:
        # Carry the peer's code (which the session echoed), not a generic PROTOCOL_ERROR.
        code = CloseCode(death.close_code) if death.close_code in _CLOSE_CODES else None
        why = f" ({death.close_reason})" if death.close_reason else ""
        return HandshakeError(
            f"{where} closed during the handshake with code {death.close_code}{why}", code
        )
    return ConnectError(f"connection to {where} died during the handshake: {death.describe()}")


def policy_after_death(policy: Policy, death: Death, where: str) -> Policy:
    """Log a reconnecting client's death; return the policy for its next connection.

    A peer that closed with TOO_MANY_PINGS refuses pings this frequent: the interval doubles
    (and the timeout with it, when it would no longer exceed the interval), up to caps,
    and the client says so loudly. Otherwise ``policy`` is kept.
    """
    _log.warning(
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
    _log.error(
        logevents.CLIENT_PING_BACKOFF,
        peer=where,
        old_interval=policy.interval,
        new_interval=interval,
        timeout=timeout,
        hint="the server refuses pings this frequent: align the two policies",
    )
    return msgspec.structs.replace(policy, interval=interval, timeout=timeout)
