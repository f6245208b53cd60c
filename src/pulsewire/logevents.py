"""Stable log event names. Match on these, not on message text.

Every event carries ``peer`` (the remote address) and, where known, ``name`` (the peer's
HELLO name). pulsewire hands its events to the standard ``logging`` logger ``pulsewire``
(``pulsewire.kernel`` for the kernel module), or to the ``logger=`` given to ``connect()``,
``serve()`` or ``Client``; the record's ``msg`` is the event dict (the event name under
``"event"``, then the fields), ready for structlog's ``ProcessorFormatter``. pulsewire never
configures logging or structlog: that is the application's job (see the logging page).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CLIENT_CONNECT_FAILED",
    "CLIENT_DISCONNECTED",
    "CLIENT_GAVE_UP",
    "CLIENT_PING_BACKOFF",
    "CLIENT_RECONNECTED",
    "CONNECTION_CLOSE",
    "HANDLER_ERROR",
    "HANDSHAKE_FAILED",
    "KERNEL_OPTION_UNSUPPORTED",
    "PEER_CONNECTED",
    "PEER_DEAD",
    "PEER_RECOVERED",
    "PEER_RTT",
    "PEER_SUSPECT",
    "SCHEDULER_LATE",
    "SCHEDULER_OVERLOADED",
    "SERVER_ACCEPT_FAILED",
    "SERVER_CLOSED",
    "SERVER_LISTENING",
    "SERVER_REFUSED",
    "SERVER_SHED",
]

PEER_CONNECTED: Final = "peer.connected"  #: handshake done; negotiated intervals
PEER_SUSPECT: Final = "peer.suspect"  #: silent past suspect_after
PEER_RECOVERED: Final = "peer.recovered"  #: evidence arrived from a suspect peer
#: a connection died, with reason, source, silence, last_rtt; with ``unsent`` and
#: ``in_doubt`` (counts of messages) when not every message sent was delivered
PEER_DEAD: Final = "peer.dead"
PEER_RTT: Final = "peer.rtt"  #: one RTT sample (only tools such as ``probe`` log these)
#: the connection died before its handshake completed (instead of ``peer.dead``): not a
#: pulsewire peer, no HELLO in time, incompatible proposals, a refusal. A listener logs at
#: most 10 per 10 s in full; the next says in ``held_back`` how many it held back.
HANDSHAKE_FAILED: Final = "peer.handshake_failed"
CONNECTION_CLOSE: Final = "connection.close"  #: the local side started an orderly close
HANDLER_ERROR: Final = "handler.error"  #: a user hook or handler raised
KERNEL_OPTION_UNSUPPORTED: Final = "kernel.option_unsupported"  #: the platform lacks an option
#: This process's event loop was blocked, so pulsewire's deadline timer ran late: a
#: blocking call in a coroutine, a long garbage-collection pause, a process stopped
#: (SIGSTOP, Ctrl-Z, a debugger) or starved of CPU: a stretch in which the loop ran
#: nothing. ``lateness`` is how late the timer ran, in seconds; ``not_counted`` is the part
#: of it (all but the first 0.1 s) that pulsewire does not count as any peer's silence, so
#: that no peer is declared dead for this side's own stall (the local-stall guard: after
#: it, every peer gets a fresh ping and a full timeout to answer). ``why`` says the same in
#: words. Logged at ``warning``, at most one line per 10 s, with ``held_back``: how many
#: more stalls there were since the last line.
SCHEDULER_LATE: Final = "scheduler.late"
#: the deadline timer fired ``lateness`` seconds late while the loop kept running: too much
#: work (overload). Not compensated: deadlines and abuse limits keep real time. At most one
#: line per 10 s, with ``held_back`` and the ``max_lateness`` so far.
SCHEDULER_OVERLOADED: Final = "scheduler.overloaded"
CLIENT_CONNECT_FAILED: Final = "client.connect_failed"  #: an attempt failed; retry_in says when
CLIENT_DISCONNECTED: Final = "client.disconnected"  #: the client's connection died (reason)
CLIENT_RECONNECTED: Final = "client.reconnected"  #: a new connection after a death
CLIENT_GAVE_UP: Final = "client.gave_up"  #: a refusal retrying cannot fix, or max_attempts
CLIENT_PING_BACKOFF: Final = "client.ping_backoff"  #: told TOO_MANY_PINGS: interval doubled
SERVER_LISTENING: Final = "server.listening"  #: addresses, max_connections, inbound_budget
#: totals: accepted, refused, shed, accept_failures, handshake_failures
SERVER_CLOSED: Final = "server.closed"
#: a connection refused at max_connections with CLOSE(OVERLOADED): peer, limit. At most one
#: line per 10 s, with ``held_back``: how many more were refused since the last line.
SERVER_REFUSED: Final = "server.refused"
#: a connection closed with CLOSE(OVERLOADED) because the server held more than its
#: inbound budget (the largest incomplete frame or message first): peer, budget. At most one
#: line per 10 s, with ``held_back``.
SERVER_SHED: Final = "server.shed"
#: ``accept()`` failed (out of file descriptors: EMFILE, ENFILE; of memory: ENOBUFS,
#: ENOMEM): error, retry_in (the listener stops accepting that long), failures (all told).
#: At most one line per 10 s, with ``held_back``; never a traceback.
SERVER_ACCEPT_FAILED: Final = "server.accept_failed"
