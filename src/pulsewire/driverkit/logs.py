"""The log event each session event becomes, the same for every driver."""

from __future__ import annotations

import structlog

from pulsewire import logevents
from pulsewire.core.events import Died, Event, HandshakeCompleted, Recovered, Suspected
from pulsewire.core.states import Reason

__all__ = ["log_event"]

_log = structlog.get_logger("pulsewire")

#: Deaths that are part of a normal life: logged at info, the others at warning.
_QUIET_REASONS = (Reason.LOCAL_CLOSE, Reason.EOF)


def log_event(event: Event, peer: str) -> None:
    """Log ``event`` of the connection to ``peer`` (messages are not logged)."""
    if isinstance(event, HandshakeCompleted):
        _log.info(
            logevents.PEER_CONNECTED,
            peer=peer,
            name=event.peer_name,
            ping_interval=event.ping_interval,
            peer_ping_interval=event.peer_ping_interval,
        )
    elif isinstance(event, Suspected):
        _log.warning(
            logevents.PEER_SUSPECT,
            peer=peer,
            silence=round(event.silence, 4),
            cause=event.cause.value,
        )
    elif isinstance(event, Recovered):
        _log.info(logevents.PEER_RECOVERED, peer=peer, silence=round(event.silence, 4))
    elif isinstance(event, Died):
        death = event.death
        log = _log.info if death.reason in _QUIET_REASONS else _log.warning
        log(
            logevents.PEER_DEAD,
            peer=peer,
            reason=death.reason.value,
            source=death.source.value,
            silence=round(death.silence, 4),
            last_rtt=death.last_rtt,
            close_code=death.close_code,
            error=None if death.error is None else str(death.error),
        )
