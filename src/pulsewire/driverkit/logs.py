"""The log event each session event becomes, the same for every driver."""

from __future__ import annotations

from typing import Any

from pulsewire import logevents
from pulsewire._log import EventLogger
from pulsewire.core.events import Death, Died, Event, HandshakeCompleted, Recovered, Suspected
from pulsewire.core.states import Reason

__all__ = ["death_fields", "log_event"]

#: Deaths that are part of a normal life: logged at info, the others at warning.
_QUIET_REASONS = (Reason.LOCAL_CLOSE, Reason.EOF)


def death_fields(death: Death) -> dict[str, Any]:
    """The log fields of ``peer.dead`` and ``peer.handshake_failed`` (with ``peer`` added)."""
    fields: dict[str, Any] = {
        "reason": death.reason.value,
        "source": death.source.value,
        "silence": round(death.silence, 4),
        "last_rtt": death.last_rtt,
        "close_code": death.close_code,
        "error": None if death.error is None else str(death.error),
    }
    if death.undelivered:  # what the application must know: not everything arrived
        fields["unsent"] = len(death.unsent)
        fields["in_doubt"] = len(death.in_doubt)
    return fields


def log_event(
    log: EventLogger, event: Event, peer: str, *, handshake_done: bool, initiator: bool
) -> None:
    """Log ``event`` of the connection to ``peer`` (messages and answered pings are not).

    A connection that dies before its handshake completed failed to become one: that is
    what is logged (``peer.handshake_failed``: a port scanner, a peer that is not
    pulsewire, a refused policy); the side that called connect() is told by its exception,
    so its line is quieter.
    """
    if isinstance(event, HandshakeCompleted):
        log.info(
            logevents.PEER_CONNECTED,
            peer=peer,
            name=event.peer_name,
            ping_interval=event.ping_interval,
            peer_ping_interval=event.peer_ping_interval,
        )
    elif isinstance(event, Suspected):
        log.warning(
            logevents.PEER_SUSPECT,
            peer=peer,
            silence=round(event.silence, 4),
            cause=event.cause.value,
        )
    elif isinstance(event, Recovered):
        log.info(logevents.PEER_RECOVERED, peer=peer, silence=round(event.silence, 4))
    elif isinstance(event, Died):
        death = event.death
        quiet = death.reason in _QUIET_REASONS or (not handshake_done and initiator)
        (log.info if quiet else log.warning)(
            logevents.PEER_DEAD if handshake_done else logevents.HANDSHAKE_FAILED,
            peer=peer,
            **death_fields(death),
        )
